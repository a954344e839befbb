"""Fault injection, end to end: each bad input or fault against the real entry points, one line
per case with what it gave and whether that is the documented behaviour.

    python scripts/faults.py [--only <substring>] [--markdown]

Every case runs in a fresh temporary folder beside a finished tiny run (an earlier run that no
case may change: it is checksummed before and after each one). A case passes when the exit code
and the message are as documented, the message is one line without a traceback, nothing was
written where it must not be, and the earlier runs are byte for byte as they were. The disk-full
and read-only cases mount a small tmpfs; where mounting is not allowed they are reported as
skipped. Exit status 1 if any case fails. `tests/test_faults_script.py` (slow) runs it in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_faults import TINY  # noqa: E402  (the tiny run of the fault tests)

SIGNAL_AT = "+callbacks.stop._target_=tests.test_faults.SignalAt"


@dataclass
class Outcome:
    code: int
    text: str  # stderr, else stdout: what the user reads
    problem: str = ""  # found by the case itself, e.g. on a tmpfs before it is unmounted


@dataclass
class Case:
    name: str
    run: Callable[[Path], Outcome]
    code: int
    phrase: str
    # paths (relative to the case folder) that must not exist afterwards
    absent: list[str] = field(default_factory=list)
    extra: Callable[[Path], str | None] | None = None  # a further check: None or what is wrong


def run(*args: str, cwd: Path = ROOT, timeout: int = 300) -> Outcome:
    env = {**os.environ, "PROJECT_ROOT": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return Outcome(done.returncode, done.stderr.strip() or done.stdout.strip())


def checksums(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------
# what the cases are made from


class Lab:
    """The shared material: fake MNIST files and one finished tiny run."""

    def __init__(self, root: Path) -> None:
        from tests.conftest import write_fake_mnist

        self.root = root
        self.data = write_fake_mnist(root / "data", n_train=400, n_test=100)
        self.logs = root / "logs"
        done = run("train.py", *TINY, f"data.data_dir={self.data}", f"paths.log_dir={self.logs}")
        if done.code != 0:
            raise SystemExit(f"the tiny run failed: {done.text[-2000:]}")
        (self.run,) = (self.logs / "train" / "runs").iterdir()
        self.ckpt = self.run / "checkpoints" / "last.ckpt"

    def copy_run(self, case: Path) -> Path:
        copy = case / "logs" / "train" / "runs" / self.run.name
        shutil.copytree(self.run, copy)
        return copy

    def train(self, case: Path, *args: str) -> Outcome:
        return run(
            "train.py", *TINY, f"data.data_dir={self.data}", f"paths.log_dir={case}/logs", *args
        )


def crafted(lab: Lab, case: Path, where: str, inside_run: bool) -> Path:
    """A real checkpoint whose model_kwargs or run_config asks to write case/PWNED."""
    import torch

    ckpt = torch.load(lab.ckpt, weights_only=True)
    node = {
        "_target_": "pathlib.Path.write_text",
        "_args_": [{"_target_": "pathlib.Path", "_args_": [str(case / "PWNED")]}, "x"],
    }
    if where == "model_kwargs":
        ckpt["model_kwargs"] = {"vocab": node}
    else:
        ckpt["run_config"]["model"] = node
    folder = lab.copy_run(case) / "checkpoints" if inside_run else case
    torch.save(ckpt, folder / "crafted.ckpt")
    return folder / "crafted.ckpt"


def script_with(script: str, lab: Lab, case: Path, ckpt: Path) -> Outcome:
    args = {
        "eval.py": ["eval.py", f"ckpt_path={ckpt}", f"paths.log_dir={case}/logs"],
        "sample.py": ["scripts/sample.py", f"ckpt_path={ckpt}", f"out={case}/s.png"],
        "tag.py": ["scripts/tag.py", f"ckpt_path={ckpt}", "text=abc"],
        "train.py": ["train.py", f"ckpt_path={ckpt}", f"paths.log_dir={case}/logs"],
    }[script]
    return run(*args)


def mounted(case: Path, options: str) -> Path | None:
    """A tmpfs mounted at case/mnt with these options, or None where mounting is not allowed."""
    point = case / "mnt"
    point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
    )
    return point if done.returncode == 0 else None


def unmount(point: Path) -> None:
    subprocess.run(["umount", str(point)], capture_output=True)


def on_tmpfs(options: str, inner: Callable[[Path], Outcome]) -> Callable[[Path], Outcome]:
    def go(case: Path) -> Outcome:
        point = mounted(case, options)
        if point is None:
            return Outcome(-1, "skipped: mounting a tmpfs is not allowed here")
        try:
            return inner(point)
        finally:
            unmount(point)

    return go


def status_is(state: str) -> Callable[[Path], str | None]:
    def check(case: Path) -> str | None:
        runs = list((case / "logs" / "train" / "runs").glob("*/status.json"))
        found = [json.loads(p.read_text())["status"] for p in runs]
        return None if found == [state] else f"status.json: {found}"

    return check


def no_truncated_checkpoint(point: Path) -> str | None:
    for path in point.rglob("*.ckpt"):
        import torch

        try:
            torch.load(path, weights_only=True)
        except Exception:
            return f"{path.name} is truncated"
    return None


def cases(lab: Lab) -> list[Case]:
    other = lab.ckpt
    t = lab.train
    out = []
    for script in ("eval.py", "sample.py", "tag.py", "train.py"):
        for where, inside in (("model_kwargs", True), ("run_config", False)):
            out.append(
                Case(
                    f"checkpoint with code in {where} -> {script}",
                    lambda c, s=script, w=where, i=inside: script_with(
                        s, lab, c, crafted(lab, c, w, i)
                    ),
                    2,
                    "refused",
                    absent=["PWNED", "logs/eval"],
                )
            )

    def saved_config(case: Path) -> Outcome:
        copy = lab.copy_run(case)
        config = copy / ".hydra" / "config.yaml"
        config.write_text(config.read_text().replace("src.models.vae.VAE", "builtins.open", 1))
        return run("eval.py", f"ckpt_path={copy}/checkpoints/last.ckpt", f"paths.log_dir={case}/e")

    def pickled(case: Path) -> Outcome:
        (case / "evil.ckpt").write_bytes(
            b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94"
            b"\x93\x94\x8c\x04true\x94\x85\x94R\x94."
        )
        return run("eval.py", f"ckpt_path={case}/evil.ckpt", f"paths.log_dir={case}/e")

    def write_file(name: str, content: bytes) -> Callable[[Path], Path]:
        def make(case: Path) -> Path:
            (case / name).write_bytes(content)
            return case / name

        return make

    def conll(case: Path, val: bytes) -> Outcome:
        (case / "train.conll").write_text("John B-PER\nruns O\n\nAnn B-PER\nsits O\n")
        (case / "val.conll").write_bytes(val)
        return run(
            "train.py",
            "model=crf_tagger",
            "data=conll",
            f"data.train_file={case}/train.conll",
            f"data.val_file={case}/val.conll",
            f"paths.log_dir={case}/logs",
            "extras.print_config=false",
        )

    def corrupt_gz(case: Path) -> Outcome:
        from tests.conftest import write_fake_mnist

        data = write_fake_mnist(case / "data", n_train=400, n_test=100)
        path = data / "t10k-labels-idx1-ubyte.gz"
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        raw[len(raw) // 2 + 1] ^= 0xFF
        path.write_bytes(bytes(raw))
        return run("train.py", *TINY, f"data.data_dir={data}", f"paths.log_dir={case}/logs")

    def experiment_typo(case: Path) -> Outcome:
        (case / "conf" / "experiment").mkdir(parents=True)
        (case / "conf" / "experiment" / "mine.yaml").write_text(
            "# @package _global_\ntrainr:\n  max_time: 00:00:01:00\n"
        )
        return t(case, f"hydra.searchpath=[file://{case}/conf]", "experiment=mine")

    def yaml_error(case: Path) -> Outcome:
        (case / "conf" / "experiment").mkdir(parents=True)
        (case / "conf" / "experiment" / "mine.yaml").write_text("a: 1\n  b: [2\n")
        return t(case, f"hydra.searchpath=[file://{case}/conf]", "experiment=mine")

    def sweep_summary(case: Path) -> Outcome:
        job = case / "sweep" / "0"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
        (job / "metrics.json").write_text('{"val/nelbo": 1.0}')
        return run("scripts/summarize.py", str(case / "sweep"), "--metrics", "val/nlebo")

    def sigterm_sweep(case: Path) -> Outcome:
        return run(
            "train.py",
            "-m",
            *TINY,
            "seed=1,2,3",
            f"data.data_dir={lab.data}",
            f"paths.log_dir={case}/logs",
            SIGNAL_AT,
            "+callbacks.stop.step=2",
            f"+callbacks.stop.signum={int(signal.SIGTERM)}",
        )

    def full_disk(point: Path) -> Outcome:
        done = run("train.py", *TINY, f"data.data_dir={lab.data}", f"paths.log_dir={point}/logs")
        done.problem = no_truncated_checkpoint(point) or ""
        return done

    def read_only(point: Path) -> Outcome:
        return run("train.py", *TINY, f"data.data_dir={lab.data}", f"paths.log_dir={point}/logs")

    out += [
        Case(
            "saved .hydra/config.yaml with code -> eval.py",
            saved_config,
            2,
            "is refused",
            absent=["e"],
        ),
        Case(
            "pickled payload as a checkpoint -> eval.py", pickled, 2, "could run code", absent=["e"]
        ),
        Case(
            "random bytes as a checkpoint -> eval.py",
            lambda c: run(
                "eval.py",
                f"ckpt_path={write_file('r.ckpt', os.urandom(300))(c)}",
                f"paths.log_dir={c}/e",
            ),
            2,
            "not a readable checkpoint",
            absent=["e"],
        ),
        Case(
            "zero-byte checkpoint -> train.py ckpt_path=",
            lambda c: t(c, f"ckpt_path={write_file('z.ckpt', b'')(c)}"),
            2,
            "(0 bytes)",
            absent=["logs"],
        ),
        Case(
            "truncated checkpoint -> train.py ckpt_path=",
            lambda c: t(c, f"ckpt_path={write_file('t.ckpt', lab.ckpt.read_bytes()[:5000])(c)}"),
            2,
            "truncated",
            absent=["logs"],
        ),
        Case(
            "resume=B ckpt_path=<A's checkpoint>",
            lambda c: run("train.py", f"resume={lab.copy_run(c)}", f"ckpt_path={other}"),
            2,
            "belongs to",
        ),
        Case(
            "resume a finished run",
            lambda c: run("train.py", f"resume={lab.copy_run(c)}"),
            0,
            "nothing to resume",
        ),
        Case(
            "resume with a bad value (fails after Hydra started)",
            lambda c: run("train.py", f"resume={lab.copy_run(c)}", "model.latent.dim=0"),
            2,
            "left as it was",
        ),
        Case(
            "SIGTERM during training",
            lambda c: t(
                c,
                SIGNAL_AT,
                "+callbacks.stop.step=3",
                f"+callbacks.stop.signum={int(signal.SIGTERM)}",
            ),
            143,
            "interrupted by SIGTERM at step 3: last.ckpt saved",
            extra=status_is("interrupted"),
        ),
        Case(
            "SIGUSR1 (SLURM's warning) during training",
            lambda c: t(
                c,
                SIGNAL_AT,
                "+callbacks.stop.step=3",
                f"+callbacks.stop.signum={int(signal.SIGUSR1)}",
            ),
            138,
            "interrupted by SIGUSR1",
            extra=status_is("interrupted"),
        ),
        Case("SIGTERM in a sweep of 3", sigterm_sweep, 143, "these jobs did not run: 1:"),
        Case("summarize.py --metrics val/nlebo", sweep_summary, 2, "did you mean val/nelbo"),
        Case(
            "misspelt top-level key in an experiment (trainr:)",
            experiment_typo,
            2,
            "did you mean 'trainer'",
            absent=["logs/train/runs/*"],
        ),
        Case(
            "training diverges (model.optimizer.lr=1e6)",
            lambda c: t(c, "model.optimizer.lr=1e6"),
            2,
            "training diverged at step",
            extra=status_is("diverged"),
        ),
        Case(
            "model.latent.dim=0",
            lambda c: t(c, "model.latent.dim=0"),
            2,
            "out of range",
            absent=["logs/train/runs/*"],
        ),
        Case(
            "model.iwae_samples=-1",
            lambda c: t(c, "model.iwae_samples=-1"),
            2,
            ">= 0",
            absent=["logs/train/runs/*"],
        ),
        Case(
            "negative learning rate",
            lambda c: t(c, "model.optimizer.lr=-0.01"),
            2,
            "> 0",
            absent=["logs/train/runs/*"],
        ),
        Case(
            "data.batch_size=0",
            lambda c: t(c, "data.batch_size=0"),
            2,
            "out of range",
            absent=["logs/train/runs/*"],
        ),
        Case(
            "misspelt key (model.latent.dimm=3)",
            lambda c: t(c, "model.latent.dimm=3"),
            2,
            "no such key (model.latent has",
            absent=["logs"],
        ),
        Case(
            "unknown option (model=nope)",
            lambda c: t(c, "model=nope"),
            2,
            "Available options in 'model'",
            absent=["logs"],
        ),
        Case(
            "YAML syntax error in a user's config",
            yaml_error,
            2,
            "YAML syntax error",
            absent=["logs"],
        ),
        Case("byte-corrupted .gz", corrupt_gz, 2, "cannot read", absent=["logs/train/runs/*"]),
        Case(
            "non-UTF-8 CoNLL file",
            lambda c: conll(c, "Jos\xe9 B-PER\n".encode("latin-1")),
            2,
            "is not UTF-8 text",
            absent=["logs/train/runs/*"],
        ),
        Case(
            "empty data.val_file",
            lambda c: conll(c, b"\n\n"),
            2,
            "holds no sentences",
            absent=["logs/train/runs/*"],
        ),
        Case(
            "a 100k-character unseen tag",
            lambda c: conll(c, ("x " + "Y" * 100_000 + "\n").encode()),
            2,
            "(100000 chars)",
            absent=["logs/train/runs/*"],
        ),
        Case(
            "non-UTF-8 input to tag.py",
            lambda c: run(
                "scripts/tag.py",
                f"ckpt_path={lab.ckpt}",
                "--file",
                str(write_file("in.txt", "caf\xe9".encode("latin-1"))(c)),
            ),
            2,
            "is not UTF-8 text",
        ),
        Case(
            "sample.py out=<a folder>",
            lambda c: run("scripts/sample.py", f"ckpt_path={lab.ckpt}", f"out={c}"),
            2,
            "is a folder",
        ),
        Case("read-only logs folder", on_tmpfs("ro,size=64k", read_only), 2, "cannot be written"),
        Case("full disk while training", on_tmpfs("size=2m", full_disk), 2, "the disk is full"),
    ]
    return out


def check(case: Case, outcome: Outcome, folder: Path) -> str:
    """'' when the outcome is the documented one, else what is wrong."""
    if outcome.code == -1:
        return "skipped"
    problems = [outcome.problem] if outcome.problem else []
    if outcome.code != case.code:
        problems.append(f"exit {outcome.code}, expected {case.code}")
    if case.phrase not in outcome.text:
        problems.append(f"message lacks {case.phrase!r}")
    if "Traceback" in outcome.text:
        problems.append("a traceback")
    errors = [line for line in outcome.text.splitlines() if line.startswith("error: ")]
    if case.code == 2 and (len(errors) != 1 or not outcome.text.endswith(errors[-1])):
        problems.append(f"{len(errors)} error lines, not one at the end")
    for pattern in case.absent:
        if list(folder.glob(pattern)):
            problems.append(f"{pattern} was left")
    if case.extra is not None:
        found = case.extra(folder)
        if found:
            problems.append(found)
    return "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose name holds this")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="faults_") as tmp:
        lab = Lab(Path(tmp))
        before = checksums(lab.logs)
        if args.markdown:
            print("| case | exit | what it says | verdict |\n|---|---:|---|---|")
        for i, case in enumerate(c for c in cases(lab) if args.only in c.name):
            folder = Path(tmp, f"case_{i:02d}")
            folder.mkdir()
            start = time.perf_counter()
            outcome = case.run(folder)
            problems = check(case, outcome, folder)
            if checksums(lab.logs) != before:
                problems = "; ".join(filter(None, [problems, "the earlier run changed"]))
            verdict = "ok" if not problems else "skipped" if problems == "skipped" else "FAIL"
            failed += verdict == "FAIL"
            said = outcome.text.splitlines()[-1] if outcome.text else ""
            said = said.replace(tmp, "<tmp>")
            said = said if len(said) <= 150 else said[:147] + "..."
            if args.markdown:
                said = said.replace("|", "\\|")
                print(f"| {case.name} | {outcome.code} | {said} | {verdict} {problems} |")
            else:
                seconds = time.perf_counter() - start
                print(
                    f"{verdict:7} {case.name:55} exit {outcome.code:3} {seconds:5.1f}s  {said}"
                    + (f"  [{problems}]" if problems and verdict == "FAIL" else ""),
                    flush=True,
                )
    print(f"{failed} of the cases failed" if failed else "every case gave the documented behaviour")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
