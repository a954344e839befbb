"""`model.compile=true` (`BaseModule.compiled`, `src/utils/checkpoint.py:uncompiled_names`): the
named networks are compiled in place, once, and checkpoints load across compiled and uncompiled
models both ways, the `_orig_mod.` names of a `torch.compile(net)` wrapper included. The slow test
trains and evaluates through real torch.compile (inductor) in both directions."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from src.losses.elbo import ELBO
from src.losses.likelihoods import Bernoulli
from src.models.base import BaseModule
from src.models.components.latents import GaussianLatent
from src.models.components.nets import MLPDecoder, MLPEncoder
from src.models.vae import VAE
from src.utils.checkpoint import read_checkpoint, uncompiled_names
from src.utils.errors import UserError
from tests.conftest import TINY_MNIST, run_script, write_fake_mnist


def _vae(compile: bool = False, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(
        encoder=partial(MLPEncoder, hidden=[8]),
        decoder=partial(MLPDecoder, hidden=[8]),
        latent=GaussianLatent(dim=2),
        loss=ELBO(Bernoulli()),
        optimizer=partial(torch.optim.Adam, lr=1e-3),
        image_shape=(1, 2, 2),
        compile=compile,
    )


def test_uncompiled_names_drop_whole_orig_mod_segments_only() -> None:
    names = {
        "encoder._orig_mod.net.0.weight": 1,
        "_orig_mod.decoder.bias": 2,
        "a._orig_mod._orig_mod.b": 3,
        "my_orig_mod.weight": 4,
        "encoder.net.0.bias": 5,
    }
    assert uncompiled_names(names) == {
        "encoder.net.0.weight": 1,
        "decoder.bias": 2,
        "a.b": 3,
        "my_orig_mod.weight": 4,
        "encoder.net.0.bias": 5,
    }


def test_a_checkpoint_of_wrapped_networks_loads_into_an_uncompiled_model(tmp_path: Path) -> None:
    """`torch.compile(net)` wraps (weights under `net._orig_mod.`): evaluation's reader and
    Lightning's restore (`on_load_checkpoint`, before its strict load) both take them."""
    wrapped = _vae(seed=1)
    wrapped.encoder = torch.compile(wrapped.encoder)
    wrapped.decoder = torch.compile(wrapped.decoder)
    state = wrapped.state_dict()
    assert any("._orig_mod." in name for name in state)
    path = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": state}, path)
    fresh = _vae(seed=2)
    assert not torch.equal(fresh.decoder.net[0].weight, state["decoder._orig_mod.net.0.weight"])
    fresh.load_state_dict(read_checkpoint(path)["state_dict"])
    restored = _vae(seed=3)
    checkpoint = {"state_dict": dict(state)}
    restored.on_load_checkpoint(checkpoint)
    restored.load_state_dict(checkpoint["state_dict"])
    for model in (fresh, restored):
        for name, value in model.state_dict().items():
            assert torch.equal(value, uncompiled_names(state)[name]), name


def test_compile_compiles_the_named_networks_in_place_once(monkeypatch) -> None:
    compiled: list[nn.Module] = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    eager, model = _vae(compile=False), _vae(compile=True)
    eager.configure_model()
    assert compiled == []
    model.configure_model()
    model.configure_model()  # fit, then test: still once
    assert compiled == [model.encoder, model.decoder]
    assert model.state_dict().keys() == eager.state_dict().keys()
    assert model.hparams["compile"] is True


def test_a_model_that_names_no_network_refuses_compile() -> None:
    class Plain(BaseModule):
        loss_task = "plain"

    loss = nn.Identity()
    loss.task = "plain"
    Plain(loss, partial(torch.optim.SGD, lr=0.1))
    with pytest.raises(UserError, match="names no network to compile"):
        Plain(loss, partial(torch.optim.SGD, lr=0.1), compile=True)


SHORT = [
    *TINY_MNIST,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=0",
    "test=false",
    "extras.print_config=false",
]


def _eval(ckpt: Path, logs: Path, compile: bool) -> dict[str, float]:
    result = run_script(
        "eval.py",
        f"ckpt_path={ckpt}",
        "stages=[validate]",
        f"+overrides.model.compile={str(compile).lower()}",
        f"paths.log_dir={logs}",
        "extras.print_config=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (out,) = (logs / "eval" / "runs").iterdir()
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("trained_compiled", [True, False])
def test_a_run_trained_one_way_evaluates_the_other_way_to_its_own_metrics(
    tmp_path: Path, trained_compiled: bool
) -> None:
    data = write_fake_mnist(tmp_path / "data")
    logs = tmp_path / "logs"
    flag = str(trained_compiled).lower()
    result = run_script(
        "train.py",
        *SHORT,
        f"model.compile={flag}",
        f"data.data_dir={data}",
        f"paths.log_dir={logs}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (logs / "train" / "runs").iterdir()
    trained = json.loads((run / "metrics.json").read_text())
    ckpt = run / "checkpoints" / "last.ckpt"
    names = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert names and not any("_orig_mod" in name for name in names)
    other = _eval(ckpt, tmp_path / "eval_logs", compile=not trained_compiled)
    for key in ("val/nelbo", "val/recon", "val/kl"):
        assert other[key] == pytest.approx(trained[key], rel=1e-4), key
