"""Train one trial: SGD with momentum, label smoothing, warm-up then cosine or step decay, mixed precision, data
parallelism, early stopping, and one structured event per finished epoch.

Why it is shaped this way:

* The score counts FLOPs per image times images actually processed, so image counts are summed from the batches
  that went through the model on every rank (and all-reduced), never taken from the dataset size.
* Benchmark overhead matters (the trainer is what the cluster is measured with), so the step loop never waits for
  the device: the loss is summed on the device, and the checks that must be agreed by all ranks (a non-finite loss,
  a stop request) travel in one small asynchronous all-reduce per step that is read one step later. The trainer
  therefore reacts at most one step late, and all ranks take the same decision at the same step.
* The precision recorded is the one that ran: the requested one is first probed on the device (fp16 or bf16 may be
  missing), and each epoch records the dtype the model's logits actually had under autocast.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import inspect
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from aiperf.arch import build_module
from aiperf.datasets._load import Dataset, shard_batches
from aiperf.errors import TrainError
from aiperf.events import EventSink
from aiperf.flops import forward_flops, num_params, training_flops
from aiperf.train._config import EpochStats, TrainConfig, TrainHparams, TrainResult, TrialSpec
from aiperf.train._dist import Collectives, DistContext

__all__ = ["ResolvedPrecision", "learning_rate", "resolve_precision", "train_trial", "warm_up"]

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_MAX_WORKERS = 8
_Batch = tuple[torch.Tensor, torch.Tensor]


def learning_rate(step: int, total_steps: int, warmup_steps: int, base: float, schedule: str) -> float:
    """Learning rate of optimizer step ``step`` (0-based) out of ``total_steps``.

    Linear warm-up over the first ``warmup_steps`` (from ``base / warmup_steps`` to ``base``, Goyal et al. 2017),
    then ``cosine`` decay to 0 at ``total_steps`` (Loshchilov & Hutter 2017) or ``step`` decay (x0.1 after 50% and
    again after 75% of the steps).
    """
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    drops = (step >= 0.5 * total_steps) + (step >= 0.75 * total_steps)
    return base * 0.1**drops


@dataclass(frozen=True)
class ResolvedPrecision:
    """What a requested precision becomes on a device: the autocast dtype (None: fp32 arithmetic), whether the loss
    is scaled (fp16), whether TF32 is allowed, and why it differs from the request (None if it does not)."""

    name: str
    autocast: torch.dtype | None
    scaler: bool
    tf32: bool
    note: str | None


def _autocast_works(device: torch.device, dtype: torch.dtype) -> bool:
    """Run a tiny conv net forward and backward under autocast and check that it computed in ``dtype``."""
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(False):
        return False
    try:
        conv = nn.Conv2d(3, 8, 3, padding=1)
        net = nn.Sequential(conv, nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4)).to(device)
        x = torch.randn(2, 3, 4, 4, device=device)
        with torch.autocast(device.type, dtype=dtype):
            out = net(x)
            loss = out.float().square().mean()
        loss.backward()
        grad = conv.weight.grad
        return out.dtype == dtype and grad is not None and bool(torch.isfinite(grad).all())
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def _tf32_capable(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX on x86; assumed on other architectures, where
    torch's kernels decide). Where it does not, bf16 work is emulated at a fraction of fp32's speed."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return True
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    known = [check for check in checks if callable(check)]
    return not known or any(bool(check()) for check in known)


def resolve_precision(requested: str, device: torch.device) -> ResolvedPrecision:
    """What ``requested`` can actually run as on ``device``.

    bf16 and fp16 fall back to the other half precision, then to fp32, if autocast in that dtype does not work on
    the device; fp16 on a CPU runs as bf16 (CPUs emulate fp16); tf32 becomes fp32 where there is no TF32 (CPUs,
    GPUs before Ampere).
    """
    if requested == "fp32":
        return ResolvedPrecision("fp32", None, False, False, None)
    if requested == "tf32":
        if _tf32_capable(device):
            return ResolvedPrecision("tf32", None, False, True, None)
        return ResolvedPrecision("fp32", None, False, False, f"no TF32 on {device.type}: ran fp32")
    order = [requested, "fp16" if requested == "bf16" else "bf16"]
    skipped = f"{requested} autocast does not work on {device.type}"
    if device.type == "cpu" and requested == "fp16":
        # CPUs without native fp16 arithmetic emulate it: measured ~20x slower than fp32 on an AVX-512 EPYC, so
        # fp16 there would benchmark the emulation. bf16 is the half precision CPUs run natively.
        order = ["bf16"]
        skipped = "fp16 autocast on a CPU is emulated (~20x slower than fp32)"
    if device.type == "cpu" and not cpu_has_native_bf16():
        # Nor is bf16 native everywhere: without AVX-512 BF16 or AMX (an AVX2-only EPYC) it is emulated too, and the
        # benchmark would measure the emulation (torch's bf16 GEMM ran at 0.6 GFLOP/s there, fp32 at ~170).
        return ResolvedPrecision(
            "fp32", None, False, False, f"{requested} is emulated on this CPU (no AVX-512 BF16 or AMX): ran fp32"
        )
    for name in order:
        if _autocast_works(device, _AUTOCAST[name]):
            note = None if name == requested else f"{skipped}: ran {name}"
            return ResolvedPrecision(name, _AUTOCAST[name], name == "fp16", False, note)
    return ResolvedPrecision("fp32", None, False, False, f"no half-precision autocast on {device.type}: ran fp32")


@contextlib.contextmanager
def _tf32_allowed(device: torch.device, allow: bool) -> Iterator[None]:
    """Allow or forbid TF32 matmuls and convolutions for the trial, then restore the process's settings.

    Forbidding matters: cuDNN convolutions default to TF32 on Ampere+, so "fp32" would not be fp32 otherwise.
    """
    if device.type != "cuda":
        yield
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):  # the API of torch >= 2.9; mixing it with allow_tf32 is an error
        saved = (matmul.fp32_precision, conv.conv.fp32_precision)  # type: ignore[attr-defined]
        value = "tf32" if allow else "ieee"
        matmul.fp32_precision, conv.conv.fp32_precision = value, value  # type: ignore[attr-defined]
        try:
            yield
        finally:
            matmul.fp32_precision, conv.conv.fp32_precision = saved  # type: ignore[attr-defined]
    else:
        old = (matmul.allow_tf32, conv.allow_tf32)
        matmul.allow_tf32, conv.allow_tf32 = allow, allow
        try:
            yield
        finally:
            matmul.allow_tf32, conv.allow_tf32 = old


def _tf32_active() -> bool:
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        return bool(matmul.fp32_precision == "tf32")
    return bool(matmul.allow_tf32)


class _Guard:
    """Decides, identically on every rank, when training must stop: a non-finite loss on any rank or a stop request
    on any rank. Each step's flags are summed over ranks asynchronously and read after the next step, so the host
    never waits for the device within an epoch and the decision is at most one step late. In a world of one a
    stop request is honoured at once."""

    def __init__(self, coll: Collectives, device: torch.device, should_stop: Callable[[], bool]) -> None:
        self._coll = coll
        self._device = device
        self._should_stop = should_stop
        self._distributed = coll.ctx.distributed
        self._pending: tuple[int, torch.Tensor, Any] | None = None
        self._one = torch.ones(1, device=device)
        self._zero = torch.zeros(1, device=device)

    def step(self, step: int, loss: torch.Tensor | None) -> tuple[str, int] | None:
        """Register step ``step`` (its loss, or None when evaluating); return ``(why, step)`` to stop now."""
        stop = bool(self._should_stop())
        if not self._distributed:  # one op per step: the finiteness of the loss, read one step later
            if stop:
                return self._finish() or ("stop", step)
            verdict = self._finish()
            if loss is not None:
                self._pending = (step, torch.isfinite(loss), None)
            return verdict
        bad = self._zero if loss is None else torch.isfinite(loss).logical_not().to(torch.float32).view(1)
        flags = torch.cat((bad, self._one if stop else self._zero))
        work = self._coll.sum_async_(flags)
        verdict = self._finish()
        self._pending = (step, flags, work)
        if verdict is not None:
            self._finish()  # leave no collective in flight: every rank stops here
        return verdict

    def _finish(self) -> tuple[str, int] | None:
        if self._pending is None:
            return None
        step, flags, work = self._pending
        self._pending = None
        if work is None:  # a world of one: the flag says the loss was finite
            return None if flags.item() else ("nonfinite", step)
        work.wait()
        values = flags.tolist()
        if values[0] > 0:
            return ("nonfinite", step)
        if len(values) > 1 and values[1] > 0:
            return ("stop", step)
        return None

    def drain(self) -> tuple[str, int] | None:
        """Read the last step's flags (call when the epoch's steps are done)."""
        return self._finish()

    def close(self) -> None:
        """Wait for a collective still in flight (after an error), so none is left running at shutdown."""
        if self._pending is not None and self._pending[2] is not None:
            with contextlib.suppress(RuntimeError):
                self._pending[2].wait()
        self._pending = None


class _Failed(Exception):
    """Ends the trial as failed (or stopped) with a one-line reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text or "out of memory" in text
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


class _Run:
    """One trial's training state (kept in one object so that an out-of-memory error can drop all of it)."""

    def __init__(
        self,
        spec: TrialSpec,
        ds: Dataset,
        cfg: TrainConfig,
        sink: EventSink,
        should_stop: Callable[[], bool],
        ctx: DistContext,
    ) -> None:
        self.created = time.perf_counter()
        self.spec, self.ds, self.cfg, self.sink, self.should_stop, self.ctx = spec, ds, cfg, sink, should_stop, ctx
        self.hp: TrainHparams = spec.train_hparams
        self.device = _device_for(cfg, ctx)
        self.coll = Collectives(ctx)
        self.epoch = 0
        self.step = 0
        self.global_step = 0
        self.epochs: list[EpochStats] = []
        self.train_flops = training_flops(spec.graph)
        self.eval_flops = forward_flops(spec.graph)
        self.precision: ResolvedPrecision | None = None
        self.observed: str | None = None
        self.model: nn.Module | None = None
        self.build_s = 0.0
        self.loader_s = 0.0  # this epoch's wait for the first training and the first evaluation batch
        self.input_wait_s = 0.0  # this epoch's wait for every input batch (training and evaluation)

    # -- set-up ------------------------------------------------------------------------------------------------
    def check(self) -> None:
        graph, ds = self.spec.graph, self.ds
        if tuple(graph.input_shape) != tuple(ds.input_shape) or graph.num_classes != ds.num_classes:
            raise TrainError(
                f"trial {self.spec.trial_id}: graph takes {list(graph.input_shape)} -> {graph.num_classes} classes "
                f"but dataset {ds.name} has {list(ds.input_shape)} -> {ds.num_classes} classes"
            )
        if len(ds.train) < 2 * self.ctx.world_size or len(ds.val) < 1:
            raise TrainError(f"dataset {ds.name} is too small for {self.ctx.world_size} rank(s)")
        if self.ctx.distributed and (self.ctx.backend == "horovod") != (self.cfg.backend == "horovod"):
            raise TrainError(
                f"TrainConfig.backend is {self.cfg.backend!r} but the world was started with {self.ctx.backend}"
            )

    def build(self) -> None:
        torch.manual_seed(self.cfg.seed)  # identical initial weights on every rank
        model = build_module(self.spec.graph).to(self.device)
        self.channels_last = (
            self.cfg.channels_last if self.cfg.channels_last is not None else self.device.type == "cuda"
        )
        # Inputs are made contiguous in the model's format: a stray layout is slow, and on CPUs it can be worse
        # (torch 2.13 corrupts the heap in the backward of a strided 1x1 conv on NHWC input of batch 3).
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        self.precision = resolve_precision(self.cfg.precision, self.device)
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]  # batch-norm weights and biases
        self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": self.hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hp.learning_rate,
            momentum=self.hp.momentum,
            nesterov=self.hp.nesterov and self.hp.momentum > 0,
        )
        self.train_model: nn.Module = model
        if self.ctx.distributed and self.ctx.backend == "horovod":
            import horovod.torch as hvd

            hvd.broadcast_parameters(model.state_dict(), root_rank=0)
            self.optimizer = hvd.DistributedOptimizer(self.optimizer, named_parameters=model.named_parameters())
        elif self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            # Batch-norm statistics are averaged once per epoch (sync_buffers), not broadcast at every forward.
            newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
            no_sync: dict[str, Any] = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
            self.train_model = DistributedDataParallel(
                model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                gradient_as_bucket_view=True,
                **no_sync,
            )
        self.eval_model: nn.Module = model
        if self.cfg.compile:
            self.train_model = torch.compile(self.train_model)  # type: ignore[assignment]
            self.eval_model = self.train_model if not self.ctx.distributed else torch.compile(model)  # type: ignore[assignment]
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.hp.label_smoothing)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision.scaler else None
        self.steps_per_epoch = len(self._plan(train=True, epoch=1))
        self.total_steps = self.steps_per_epoch * self.spec.epochs
        self.warmup_steps = round(self.hp.warmup_epochs * self.steps_per_epoch)
        self.workers = self._workers()

    def _workers(self) -> int:
        if not self.ds.train.uses_workers:
            return 0
        if self.cfg.data_workers is not None:
            return self.cfg.data_workers
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(_MAX_WORKERS, cpus // self.ctx.local_world_size - 1))

    def _plan(self, train: bool, epoch: int) -> list[np.ndarray]:
        split = self.ds.train if train else self.ds.val
        batch = self.hp.batch_size if train else (self.cfg.eval_batch_size or self.hp.batch_size)
        return shard_batches(
            len(split), batch, self.ctx.rank, self.ctx.world_size, shuffle=train, seed=self.cfg.seed, epoch=epoch
        )

    def _emit(self, event: dict[str, Any]) -> None:
        if self.ctx.is_main:
            self.sink.emit(event)

    def start_event(self) -> None:
        assert self.precision is not None
        device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self._emit(
            {
                "type": "trial_start",
                "trial": self.spec.trial_id,
                "trained_hash": self.spec.graph.content_hash(),
                "train_flops_per_image": self.train_flops,
                "eval_flops_per_image": self.eval_flops,
                "params": num_params(self.spec.graph),
                "precision": self.precision.name,
                "world_size": self.ctx.world_size,
                "device": self.device.type,
                "device_name": device_name,
                "initialization": "scratch",  # build_module initialises fresh weights; nothing is ever loaded
                "seed": self.cfg.seed,  # weights, data order and augmentation: what a re-execution needs
                "precision_requested": self.cfg.precision,
                "precision_note": self.precision.note,
                "backend": self.ctx.backend,
                "batch_size": self.hp.batch_size,
                "global_batch_size": self.hp.batch_size * self.ctx.world_size,
                "channels_last": self.channels_last,
                "compile": self.cfg.compile,
                "dataset": self.ds.name,
                "epochs": self.spec.epochs,
                "patience": self.spec.patience,
                "build_s": round(self.build_s, 6),
                "setup_s": round(time.perf_counter() - self.created, 6),
            }
        )

    # -- epochs ------------------------------------------------------------------------------------------------
    def _observe(self, logits: torch.Tensor) -> str:
        if logits.dtype in _DTYPE_NAMES:
            return _DTYPE_NAMES[logits.dtype]
        return "tf32" if self.device.type == "cuda" and _tf32_active() and _tf32_capable(self.device) else "fp32"

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        assert self.precision is not None
        if self.precision.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.precision.autocast)

    def train_epoch(self) -> tuple[torch.Tensor, int, float]:
        """Run one epoch's training steps; returns (summed loss on the device, images on this rank, last lr)."""
        plan = self._plan(train=True, epoch=self.epoch)
        seed = int(np.random.SeedSequence([self.cfg.seed, self.epoch, self.ctx.rank]).generate_state(1)[0])
        batches = self.ds.train.batches(plan, self.device, train=True, seed=seed, workers=self.workers)
        model, optimizer, criterion, scaler = self.train_model, self.optimizer, self.criterion, self.scaler
        groups = optimizer.param_groups
        horovod = self.ctx.distributed and self.ctx.backend == "horovod"
        guard = _Guard(self.coll, self.device, self.should_stop)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        images = 0
        lr = groups[0]["lr"]
        self.train_model.train()
        self.step = 0
        waiting = time.perf_counter()
        with contextlib.closing(guard):
            for batch, y in self._waited(batches):
                self.step += 1
                if self.step == 1:
                    self.loader_s += time.perf_counter() - waiting
                x = batch.contiguous(memory_format=self.memory_format)
                new_lr = learning_rate(
                    self.global_step, self.total_steps, self.warmup_steps, self.hp.learning_rate, self.hp.lr_schedule
                )
                if new_lr != lr:
                    lr = new_lr
                    for group in groups:
                        group["lr"] = lr
                with self._autocast():
                    out = model(x)
                    loss = criterion(out, y)
                if self.step == 1:
                    self.observed = self._observe(out)
                optimizer.zero_grad()  # set_to_none is the default (and Horovod takes no argument)
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                else:
                    scaler.scale(loss).backward()
                    if horovod:
                        optimizer.synchronize()  # type: ignore[attr-defined]
                        with optimizer.skip_synchronize():  # type: ignore[attr-defined]
                            scaler.step(optimizer)
                    else:
                        scaler.step(optimizer)
                    scaler.update()
                n = y.shape[0]
                images += n
                loss_sum.add_(loss.detach(), alpha=n)
                self.global_step += 1
                verdict = guard.step(self.step, loss.detach())
                if verdict is not None:
                    self._verdict(verdict)
            verdict = guard.drain()
            if verdict is not None:
                self._verdict(verdict)
        return loss_sum, images, lr

    def _waited(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``batches``, adding the host's time blocked in the loader to ``input_wait_s``.

        Host time only, and no device synchronisation: the step loop queues work ahead of the GPU, so while the
        device is the bottleneck the loader's prefetched batch is ready and this wait is near zero; it grows only
        when the input pipeline cannot keep up, which is what a data stall is.
        """
        clock = time.perf_counter
        iterator = iter(batches)
        while True:
            start = clock()
            try:
                item = next(iterator)
            except StopIteration:
                return
            self.input_wait_s += clock() - start
            yield item

    def _verdict(self, verdict: tuple[str, int]) -> None:
        why, step = verdict
        if why == "nonfinite":
            raise _Failed("failed", f"non-finite training loss in epoch {self.epoch}, step {step}")
        raise _Failed("stopped", f"stop requested during epoch {self.epoch} (step {step}); the epoch is not counted")

    def sync_buffers(self) -> None:
        """Average batch-norm running statistics over ranks (integer counters: rank 0's), so that every rank
        evaluates, and ends with, the same model."""
        if not self.ctx.distributed or self.model is None:
            return
        floats = [b for b in self.model.buffers() if b.is_floating_point()]
        others = [b for b in self.model.buffers() if not b.is_floating_point()]
        for group, average in ((floats, True), (others, False)):
            if not group:
                continue
            flat = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in group])
            if average:
                self.coll.sum_(flat).div_(self.ctx.world_size)
            else:
                self.coll.broadcast_(flat)
            offset = 0
            for b in group:
                b.copy_(flat[offset : offset + b.numel()].view_as(b).to(b.dtype))
                offset += b.numel()

    @torch.no_grad()
    def evaluate(self) -> tuple[torch.Tensor, int]:
        """Evaluate this rank's shard; returns ([summed loss, correct] on the device, images on this rank)."""
        plan = self._plan(train=False, epoch=self.epoch)
        batches = self.ds.val.batches(plan, self.device, train=False, seed=0, workers=self.workers)
        guard = _Guard(self.coll, self.device, self.should_stop)
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        images = 0
        self.eval_model.eval()
        waiting = time.perf_counter()
        with contextlib.closing(guard):
            for step, (batch, y) in enumerate(self._waited(batches), 1):
                if step == 1:
                    self.loader_s += time.perf_counter() - waiting
                n = y.shape[0]
                if n:
                    x = batch.contiguous(memory_format=self.memory_format)
                    with self._autocast():
                        out = self.eval_model(x)
                    logits = out.float()
                    sums[0] += nn.functional.cross_entropy(logits, y, reduction="sum")
                    sums[1] += (logits.argmax(dim=1) == y).sum()
                    images += n
                verdict = guard.step(step, None)
                if verdict is not None:
                    self._verdict(verdict)
            verdict = guard.drain()
            if verdict is not None:
                self._verdict(verdict)
        return sums, images

    def run(self) -> TrainResult:
        t0 = time.perf_counter()
        self.check()
        self.build()
        self.build_s = time.perf_counter() - t0
        assert self.precision is not None
        best: float | None = None
        since_best = 0
        stopped_early = False
        with _tf32_allowed(self.device, self.precision.tf32):
            self.start_event()
            for epoch in range(1, self.spec.epochs + 1):
                self.epoch = epoch
                self.loader_s = 0.0
                self.input_wait_s = 0.0
                t_start = time.time()
                c0 = time.perf_counter()
                loss_sum, train_images, lr = self.train_epoch()
                c1 = time.perf_counter()
                self.sync_buffers()
                eval_sums, eval_images = self.evaluate()
                totals = torch.cat(
                    (
                        loss_sum.view(1),
                        eval_sums,
                        torch.tensor([train_images, eval_images], dtype=torch.float64, device=self.device),
                    )
                )
                values = self.coll.sum_(totals).tolist()
                c2 = time.perf_counter()
                train_loss = values[0] / max(1.0, values[3])
                eval_loss = values[1] / max(1.0, values[4])
                top1 = values[2] / max(1.0, values[4])
                if not math.isfinite(train_loss) or not math.isfinite(eval_loss):
                    which = "training" if not math.isfinite(train_loss) else "evaluation"
                    raise _Failed("failed", f"non-finite {which} loss in epoch {epoch}")
                stats = EpochStats(
                    epoch=epoch,
                    t_start=t_start,
                    t_end=time.time(),
                    train_images=int(values[3]),
                    eval_images=int(values[4]),
                    train_loss=train_loss,
                    eval_loss=eval_loss,
                    top1=top1,
                    lr=lr,
                    images_per_s=values[3] / max(c1 - c0, 1e-9),
                    precision=self.observed or self.precision.name,
                    train_seconds=c1 - c0,
                    eval_seconds=c2 - c1,
                )
                self.epochs.append(stats)
                self._emit(
                    {
                        "type": "epoch",
                        "trial": self.spec.trial_id,
                        **{k: getattr(stats, k) for k in EpochStats.__dataclass_fields__},
                        "train_flops_per_image": self.train_flops,
                        "eval_flops_per_image": self.eval_flops,
                        "loader_s": round(self.loader_s, 6),
                        "input_wait_s": round(self.input_wait_s, 6),
                    }
                )
                if best is None or top1 > best:
                    best, since_best = top1, 0
                else:
                    since_best += 1
                if self.spec.patience is not None and since_best >= self.spec.patience and epoch < self.spec.epochs:
                    stopped_early = True
                    break
        return self.result("finished", None, stopped_early, time.perf_counter() - t0, self.digest())

    def digest(self) -> str:
        """SHA-256 over the model's state (parameters and buffers, in order, as raw bytes)."""
        assert self.model is not None
        sha = hashlib.sha256()
        for name, tensor in self.model.state_dict().items():
            sha.update(name.encode())
            sha.update(tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return sha.hexdigest()

    def result(
        self, status: str, reason: str | None, stopped_early: bool, wall: float, digest: str | None = None
    ) -> TrainResult:
        best = max((e.top1 for e in self.epochs), default=None)
        if self.epochs:
            precision = self.epochs[-1].precision
        else:
            precision = self.observed or (self.precision.name if self.precision else self.cfg.precision)
        return TrainResult(
            trial=self.spec.trial_id,
            status=status,
            reason=reason,
            epochs=tuple(self.epochs),
            best_top1=best,
            precision=precision,
            stopped_early=stopped_early,
            world_size=self.ctx.world_size,
            wall_seconds=wall,
            state_digest=digest,
        )


def _device_for(cfg: TrainConfig, ctx: DistContext) -> torch.device:
    if ctx.distributed or ctx.device != "cpu":
        device = torch.device(ctx.device)
        if cfg.device not in ("auto", device.type):
            raise TrainError(f"TrainConfig.device is {cfg.device!r} but this rank was set up on {ctx.device}")
        return device
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainError("TrainConfig.device is 'cuda' but torch sees no CUDA device (use 'cpu' or 'auto')")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def warm_up(ds: Dataset, cfg: TrainConfig, dist: DistContext | None = None) -> float:
    """Pay a process's one-time costs before the benchmark window opens; returns the seconds it took.

    A worker's first trial used to carry them inside the window (measured on this project's CPU machine with
    bench/bench_duty_cycle.py): building the first optimizer imports ``torch._dynamo`` (1.5-2.5 s), the precision
    probe initialises the device's half-precision kernels, and an in-memory dataset is generated or copied to the
    device on its first batch (0.2 s for 4,096 CIFAR-shaped synthetic images). This trains nothing, emits nothing
    and leaves no state behind but those caches, so every trial still starts from scratch.
    """
    start = time.perf_counter()
    ctx = dist or DistContext()
    device = _device_for(cfg, ctx)
    torch.optim.SGD([torch.zeros(1, device=device, requires_grad=True)], lr=0.1)
    resolve_precision(cfg.precision, device)
    for split in (ds.train, ds.val):
        if len(split) and not split.uses_workers:  # file-backed splits start their loaders per epoch anyway
            batches = split.batches([np.arange(min(2, len(split)))], device, train=False, seed=0)
            next(iter(batches), None)
    return time.perf_counter() - start


def train_trial(
    spec: TrialSpec,
    ds: Dataset,
    cfg: TrainConfig,
    sink: EventSink,
    should_stop: Callable[[], bool] = lambda: False,
    dist: DistContext | None = None,
) -> TrainResult:
    """Train ``spec`` on ``ds`` and return how it ended; emit ``trial_start`` and one ``epoch`` event per finished
    epoch to ``sink`` (rank 0 only; payloads as in :mod:`aiperf.events`).

    Every rank of a data-parallel world calls this with the same spec and its own ``dist`` context. ``should_stop``
    is polled after every step; when it returns true on any rank, all ranks stop within one step and the trial ends
    as ``stopped`` without an event for the unfinished epoch. A non-finite loss ends it as ``failed``; so does running
    out of memory (the reason names the batch size). Configuration problems raise :class:`~aiperf.errors.TrainError`
    and anything else (a bug) propagates.
    """
    ctx = dist or DistContext()
    run = _Run(spec, ds, cfg, sink, should_stop, ctx)
    t0 = time.perf_counter()
    oom: str | None = None
    try:
        return run.run()
    except _Failed as failed:
        return run.result(failed.status, failed.reason, False, time.perf_counter() - t0)
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc):
            raise
        where = f"epoch {run.epoch}, step {run.step}" if run.epoch else "while building the model"
        oom = (
            f"out of memory at batch size {run.hp.batch_size} per device ({where}, {ctx.world_size} rank(s)): "
            f"{_first_line(exc)}"
        )
    # Out of memory: drop the model, optimizer and batches (the traceback is gone by now) before returning.
    result = run.result("failed", oom, False, time.perf_counter() - t0)
    run.model = None
    del run
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result
