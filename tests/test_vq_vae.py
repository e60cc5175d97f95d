"""The VQ-VAE: quantisation, the EMA codebook and its restarts, the PixelCNN prior's causality,
DDP agreement, and the second stage (`aekit train-prior`) end to end."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner
from safetensors.torch import load_file

import aekit
from aekit.app import training
from aekit.cli import main
from aekit.data import load_dataset
from aekit.errors import ConfigError, TrainingError
from aekit.models.base import Batch, StepContext
from aekit.models.vq_vae import LAPLACE_EPS, VQVAE, EMACodebook, VQVAEConfig, code_statistics, nearest_code
from aekit.nn import GatedPixelCNN
from aekit.registry import build_model
from aekit.run.lock import RunLock

TINY = {k: v for k, v in vars(VQVAEConfig.tiny()).items() if k != "in_shape"}


def tiny(**overrides) -> VQVAE:
    torch.manual_seed(0)
    return build_model("vq-vae", VQVAEConfig.tiny((1, 16, 16), **overrides))


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: on a busy 2-core machine two OpenMP threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- quantisation ---------------------------------------------------------------------------------

def test_quantisation_picks_the_nearest_code():
    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(16, 8, generator=g)
    z = torch.randn(200, 8, generator=g)
    assert torch.equal(nearest_code(z, codebook), torch.cdist(z, codebook).argmin(dim=1))
    # each code, slightly moved, finds itself
    assert torch.equal(nearest_code(codebook + 1e-3 * torch.randn(16, 8, generator=g), codebook), torch.arange(16))


def test_encode_is_the_quantised_grid_and_decodes():
    model = tiny().eval()
    x = torch.rand(3, 1, 16, 16)
    z = model.encode(x).mode()  # (3, D * h * w)
    assert z.shape == (3, model.latent_dim) == (3, 8 * 4 * 4) and model.encode(x).logvar is None
    grid = z.view(3, 8, 4, 4).permute(0, 2, 3, 1).reshape(-1, 8)  # one row per position
    codes = model.quantizer.codebook
    assert torch.equal(grid, codes[model.code_indices(x).flatten()])  # every row is a codebook entry
    assert torch.equal(model.decode(z), model.reconstruct(x))


def test_the_straight_through_gradient_reaches_the_encoder_unchanged():
    model = tiny().eval()  # eval: no EMA step, the codebook stays put
    x = torch.rand(4, 1, 16, 16)
    out = model(Batch(x=x, target=x))
    assert torch.equal(out.z.detach(), out.posterior.mean)  # the decoder sees the quantised codes ...
    w = torch.randn(out.z.shape, generator=torch.Generator().manual_seed(1))
    last = model.encoder[-1].weight
    (through_quantiser,) = torch.autograd.grad((out.z * w).sum(), last)
    z_e = model.encoder(x).flatten(1)  # the same channel-first layout
    (direct,) = torch.autograd.grad((z_e * w).sum(), last)
    torch.testing.assert_close(through_quantiser, direct)  # ... and the encoder gets d/dz as if unquantised
    losses = model.loss(Batch(x=x, target=x), model(Batch(x=x, target=x)))
    losses.total.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.encoder.parameters())


# -- the EMA codebook -----------------------------------------------------------------------------

def fixed_codebook(decay: float = 0.9, restart_after: int = 1000) -> EMACodebook:
    book = EMACodebook(4, 2, decay=decay, restart_after=restart_after)
    book.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [100.0, 100.0]]))
    book.ema_count.fill_(1.0)
    book.ema_sum.copy_(book.codebook)
    book.initialised.fill_(True)
    return book


def test_an_ema_step_moves_used_codes_towards_their_vectors():
    book = fixed_codebook(decay=0.9)
    z = torch.tensor([[1.0, 1.0], [1.0, 3.0], [9.0, 1.0]])  # two near code 0, one near code 1
    idx = book.nearest(z)
    assert idx.tolist() == [0, 0, 1]
    before = book.codebook.clone()
    assert book.update(z, idx, None) == 0
    # the EMA with Laplace smoothing, written out
    count = 0.9 * torch.ones(4) + 0.1 * torch.tensor([2.0, 1.0, 0.0, 0.0])
    total = count.sum()
    smoothed = (count + LAPLACE_EPS) / (total + 4 * LAPLACE_EPS) * total
    sums = 0.9 * before + 0.1 * torch.stack([z[0] + z[1], z[2], torch.zeros(2), torch.zeros(2)])
    torch.testing.assert_close(book.codebook, sums / smoothed[:, None])
    for code, target in ((0, z[:2].mean(0)), (1, z[2])):
        assert (book.codebook[code] - target).norm() < (before[code] - target).norm()
    torch.testing.assert_close(book.codebook[2:], before[2:], atol=1e-3, rtol=1e-4)  # unused: (almost) unmoved


def test_a_code_unused_for_a_while_is_restarted_at_an_encoder_vector():
    book = fixed_codebook(restart_after=5)
    z = torch.tensor([[1.0, 1.0], [9.0, 1.0], [1.0, 9.0], [2.0, 2.0]])  # never near code 3
    restarts = [book.update(z, book.nearest(z), torch.Generator().manual_seed(0)) for _ in range(5)]
    assert restarts == [0, 0, 0, 0, 1]
    assert any(torch.equal(book.codebook[3], row) for row in z)
    assert int(book.idle_steps[3]) == 0


def train_on_digits(model: VQVAE, images: torch.Tensor, *, epochs: int, batch: int = 50) -> float:
    """Train ``model`` on ``images``; returns the number of codes restarted along the way."""
    opts = model.configure_optimizers(2e-3, 0.0)
    g = torch.Generator().manual_seed(0)
    restarts = 0.0
    for _ in range(epochs):
        for i in torch.randperm(images.shape[0], generator=g).split(batch):
            losses = model.training_step(Batch(x=images[i], target=images[i]), opts, StepContext(forward=model, generator=g))
            restarts += float(losses.parts["restarts"])
    return restarts


def test_the_codebook_does_not_collapse_on_a_few_hundred_digits():
    images = load_dataset("mnist-5k").train.images[:300]
    sizes = {"channels": (16, 32), "res_blocks": 1, "code_dim": 8, "codebook_size": 32}

    def perplexity(model: VQVAE) -> float:
        model.eval()
        return float(code_statistics(model.code_indices(images), 32)[0])

    torch.manual_seed(0)
    model = build_model("vq-vae", VQVAEConfig(**sizes, restart_after=10))
    restarts = train_on_digits(model, images, epochs=16)
    torch.manual_seed(0)
    without = build_model("vq-vae", VQVAEConfig(**sizes, restart_after=1_000_000))
    train_on_digits(without, images, epochs=16)
    assert restarts > 0  # dead codes came back ...
    assert perplexity(model) > 8  # ... and the digits use many codes, far from a collapse to one (perplexity 1)
    assert perplexity(model) > 2 * perplexity(without)  # the restarts are what keeps them in use


# -- NaN and infinities ---------------------------------------------------------------------------

def test_a_non_finite_loss_stops_training_and_leaves_the_codebook_alone():
    model = tiny()
    opts = model.configure_optimizers(1e-3, 0.0)
    x = torch.rand(4, 1, 16, 16)
    model.training_step(Batch(x=x, target=x), opts)  # k-means start
    state = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingError, match="not finite"):
        model.training_step(Batch(x=bad, target=x), opts)
    for key, value in model.quantizer.state_dict().items():
        assert torch.equal(value, state[key]), key


# -- the prior ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,layers", [(3, 1), (5, 3), (7, 2)])
def test_the_prior_is_causal(kernel, layers):
    """The logits at position p depend on positions before p (raster order) and on no other."""
    torch.manual_seed(0)
    prior = GatedPixelCNN(10, width=8, layers=layers, first_kernel=kernel).double()
    g = torch.Generator().manual_seed(0)
    grid = torch.randint(0, 10, (1, 5, 6), generator=g)
    with torch.no_grad():
        base = prior(grid)[0]  # (K, 5, 6)
        for p in range(30):
            i, j = divmod(p, 6)
            later = grid.clone().view(-1)
            later[p:] = (later[p:] + 1 + torch.randint(0, 9, (30 - p,), generator=g)) % 10  # every later value differs
            assert torch.equal(prior(later.view(1, 5, 6))[0, :, i, j], base[:, i, j]), (i, j)
            # the neighbours above and to the left do matter, so the test can tell
            for q in ([p - 6] if i > 0 else []) + ([p - 1] if j > 0 else []):
                earlier = grid.clone().view(-1)
                earlier[q] = (earlier[q] + 1) % 10
                assert not torch.equal(prior(earlier.view(1, 5, 6))[0, :, i, j], base[:, i, j]), (i, j, q)


def test_the_prior_refuses_to_sample_until_trained_and_then_follows_its_generator():
    model = tiny().eval()
    assert not model.generative and VQVAE.generative  # the family samples; this model not yet
    with pytest.raises(ConfigError, match=r"not trained yet: run `aekit train-prior RUN`"):
        model.sample(2)
    with pytest.raises(ConfigError, match="train-prior"):
        model.prior_sample(2)
    with pytest.raises(ConfigError, match="code indices"):
        model.log_prior(torch.zeros(2, model.latent_dim))
    model.record_prior_training(1)
    assert model.generative
    a = model.sample(3, generator=torch.Generator().manual_seed(5))
    b = model.sample(3, generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 1, 16, 16) and torch.equal(a, b)
    z = model.prior_sample(3, generator=torch.Generator().manual_seed(5))  # (3, D): quantised vectors
    rows = z.view(3, 8, 4, 4).permute(0, 2, 3, 1).reshape(-1, 8)
    assert (rows[:, None, :] == model.quantizer.codebook[None]).all(dim=2).any(dim=1).all()  # each one a code
    with pytest.raises(ConfigError, match="temperature"):
        model.sample(2, temperature=0.0)


def test_the_prior_weights_are_saved_but_never_trained_with_the_autoencoder():
    model = tiny()
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.startswith("prior") for n in names)
    assert {n for n in model.state_dict() if n.startswith("prior.")}  # saved with the model
    assert {"quantizer.codebook", "quantizer.ema_count", "quantizer.ema_sum", "prior_epochs"} <= set(model.state_dict())
    assert not model.has_unused_parameters


# -- DDP ------------------------------------------------------------------------------------------

def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = build_model("vq-vae", VQVAEConfig.tiny((1, 16, 16)))
        ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=model.has_unused_parameters)
        opts = model.configure_optimizers(1e-3, 0.0)
        data = torch.rand(8, 4, 1, 16, 16, generator=torch.Generator().manual_seed(1))  # 4 steps of 4 per rank
        g = torch.Generator().manual_seed(10 + rank)  # different noise: the restarts must still agree
        for step in range(4):
            x = data[step * 2 + rank]
            model.training_step(Batch(x=x, target=x), opts, StepContext(forward=ddp, generator=g))
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_replicas_keep_one_codebook(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert int(a["quantizer.initialised"]) == 1
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


# -- the second stage, end to end -----------------------------------------------------------------

@pytest.fixture(scope="module")
def vq_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vq") / "run"
    training.train(model="vq-vae", epochs=1, out=out, model_options=TINY, batch_size=256, write_report=False)
    return out


def test_train_prior_lowers_the_nll_keeps_the_autoencoder_and_then_samples(vq_run, tmp_path):
    before = load_file(str(vq_run / "model.safetensors"))
    model = aekit.load(vq_run)
    assert not model.generative
    with pytest.raises(ConfigError, match="run `aekit train-prior RUN`"):
        model.sample(8)
    early = run_cli("sample", str(vq_run), "-n", "8", "-o", str(tmp_path / "early.png"))
    assert early.exit_code == 1 and "run `aekit train-prior RUN`" in early.output, early.output
    assert len(early.output.strip().splitlines()) == 1

    result = run_cli("train-prior", str(vq_run), "--epochs", "2", "--batch-size", "256", "--no-progress")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split("  ")[0] for line in lines[:2]] == ["prior epoch 1/2", "prior epoch 2/2"]
    assert "nats" in lines[0] and "bits" in lines[0]

    metrics = json.loads((vq_run / "prior_metrics.json").read_text())
    assert metrics["nll_nats"] < metrics["nll_nats_before"]
    assert metrics["nll_nats"] < metrics["uniform_nll_nats"] and metrics["prior_epochs"] == 2
    after = load_file(str(vq_run / "model.safetensors"))
    assert after.keys() == before.keys()
    prior_keys = {k for k in after if k.startswith("prior.")}
    for key in after.keys() - prior_keys - {"prior_epochs"}:
        assert torch.equal(after[key], before[key]), key  # the autoencoder, bit for bit
    assert any(not torch.equal(after[k], before[k]) for k in prior_keys)
    assert int(after["prior_epochs"]) == 2
    assert not list(vq_run.glob(".model.safetensors.*"))  # no temporary file left

    assert aekit.load(vq_run).generative
    result = run_cli("sample", str(vq_run), "-n", "8", "-o", str(tmp_path / "s.png"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_prior_refusals_are_one_line(vq_run, make_run, tmp_path):
    other = make_run("dense-ae")
    result = CliRunner().invoke(main, ["train-prior", str(other), "--epochs", "1"])
    assert result.exit_code == 1 and "has no prior to train" in result.output
    assert len(result.output.strip().splitlines()) == 1

    lock = RunLock(vq_run).acquire()
    try:
        result = CliRunner().invoke(main, ["train-prior", str(vq_run), "--epochs", "1"])
    finally:
        lock.release()
    assert result.exit_code == 1 and "is being trained by process" in result.output

    result = CliRunner().invoke(main, ["train-prior", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no such run folder" in result.output


def test_a_non_finite_prior_loss_leaves_the_run_as_it_was(vq_run, monkeypatch):
    weights = (vq_run / "model.safetensors").read_bytes()
    metrics = (vq_run / "prior_metrics.json").read_bytes() if (vq_run / "prior_metrics.json").exists() else None

    def nan_nll(self, indices):
        return self.prior(indices).sum(dim=(1, 2, 3)) * float("nan")

    monkeypatch.setattr(VQVAE, "prior_nll", nan_nll)
    result = CliRunner().invoke(main, ["train-prior", str(vq_run), "--epochs", "1"])
    assert result.exit_code == 1 and "not finite" in result.output and "lower --lr" in result.output
    assert (vq_run / "model.safetensors").read_bytes() == weights
    now = (vq_run / "prior_metrics.json").read_bytes() if (vq_run / "prior_metrics.json").exists() else None
    assert now == metrics
