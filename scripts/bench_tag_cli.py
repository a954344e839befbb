"""`scripts/tag.py` against jieba's command line, as a user runs them: whole commands, one thread.

    python scripts/bench_tag_cli.py CKPT [--file F | --copies 10] [--repeats 3]

CKPT is a word segmenter's checkpoint (e.g. `experiment=crf_cws`'s last.ckpt). The input is
`--file`, or the People's Daily test split's text (as `data=people_daily` splits it) written
`--copies` times. Each command runs `--repeats` times, alternating, with OMP_NUM_THREADS=1; the
medians are printed with characters per second and the ratio to jieba's (`python -m jieba -d " "
FILE`, the `bench` extra). Wall times include start-up: importing, reading the checkpoint or
jieba's dictionary. A single-sentence command is timed the same way. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "今天下午，北京大学的研究人员发表了一篇关于条件随机场的论文。"


def test_text(copies: int) -> str:
    sys.path.insert(0, str(ROOT))
    from src.data.tagging import PeopleDailyDataModule

    data = PeopleDailyDataModule(task="cws")
    data.setup()
    lines = ["".join(tokens) for tokens, _ in data.splits["test"]]
    return "\n".join(lines * copies) + "\n"


def wall(command: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.decode()[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--file", type=Path)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path, one = args.file, Path(folder) / "one.txt"
        if path is None:
            path = Path(folder) / "input.txt"
            path.write_text(test_text(args.copies), encoding="utf-8")
        one.write_text(SENTENCE + "\n", encoding="utf-8")
        chars = sum(len(line.strip()) for line in path.read_text(encoding="utf-8").splitlines())
        tag = [sys.executable, "scripts/tag.py", f"ckpt_path={args.ckpt}", "--file"]
        commands = {
            "jieba": lambda f: [sys.executable, "-m", "jieba", "-d", " ", str(f)],
            "tag.py": lambda f: [*tag, str(f)],
            "tag.py precision=bf16": lambda f: [*tag, str(f), "precision=bf16"],
        }
        if importlib.util.find_spec("jieba") is None:
            print("jieba is not installed (the bench extra): tag.py alone, no ratio")
            del commands["jieba"]
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):
            for name, command in commands.items():
                for label, f in (("file", path), ("one sentence", one)):
                    times.setdefault((name, label), []).append(wall(command(f)))
    print(f"{chars:,} characters, {args.repeats} repeats, medians, OMP_NUM_THREADS=1\n")
    print("| command | file, s | characters/s | vs jieba | one sentence, s |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(times.get(("jieba", "file"), [float("nan")]))
    for name in commands:
        file_s = statistics.median(times[(name, "file")])
        one_s = statistics.median(times[(name, "one sentence")])
        speed = f"{chars / file_s:,.0f} | {base / file_s:.2f}x"
        print(f"| {name} | {file_s:.2f} | {speed} | {one_s:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
