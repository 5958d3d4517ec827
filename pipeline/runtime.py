"""Device, precision and distribution: decided here and nowhere else.

The same training code runs on the CPU (tests), on one CUDA GPU, and on several under ``torchrun``
(DistributedDataParallel, one process per GPU; gloo on CPU, which is how the tests exercise it).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


def unwrap(model) -> nn.Module:
    """The model inside any DistributedDataParallel / DataParallel (``.module``) and torch.compile
    (``._orig_mod``) wrappers, in whatever order they were applied.

    Only wrappers are opened: a plain nn.Module that happens to have a ``module`` attribute is left alone.
    """
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) or (
            not isinstance(model, nn.Module) and hasattr(model, "module")
        ):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full fp32
    channels_last: bool
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def autocast(self):
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self):
        """fp16 needs loss scaling; bf16 and fp32 do not. Returns a GradScaler that is enabled only for fp16."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)

    def prepare_module(self, module: nn.Module) -> nn.Module:
        """Move to the device (and channels_last memory format on a GPU)."""
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel under torchrun; the module itself otherwise."""
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        # progressive models leave the layers of resolutions not reached yet without gradients
        unused = getattr(module, "has_unused_parameters", False)
        # a false alarm, once per process: 1x1 convolutions' weight gradients under channels_last have other
        # strides than the weight on their size-1 dimensions, which DDP compares literally; the layout is the same
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        # buffers (batch-norm statistics, the spectral norms' u and v, ProGAN's stage) go from rank 0 to the
        # others at each forward: DDP's default, not passed, as torch 2.14 deprecates the argument's name
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=unused)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of images float [N, 3, H, W] in the memory layout the models run fastest with here
        (channels_last on a GPU when asked for; as it is otherwise). Values are not changed."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def all_mean(self, value: float) -> float:
        """The mean of a number over all processes (for logging)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def any_process(self, flag: bool) -> bool:
        """Whether ``flag`` is true in any process: a decision that every process must take alike (stopping
        for the time budget). Costs a collective and a device sync under DDP; the flag itself where alone."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def from_main(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` in every process (float64: whole numbers up to 2**53 come through exactly), for
        decisions that every process must take alike from rank 0's measurements (the plan of a budgeted run).
        A collective under DDP; ``values`` themselves where alone."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return t.tolist()

    def synchronize(self) -> None:
        """Wait for the device's queued work (a GPU's), so that a clock read after it times that work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: the process's CUDA GPU when there is one, else the CPU; or ``cpu``/``cuda``/``cuda:N``."""
    if requested == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        count = torch.cuda.device_count()
        if local_rank >= count:  # torchrun --nproc_per_node larger than the GPUs here
            raise RuntimeError(
                f"process of local rank {local_rank} has no GPU of its own: {count} visible. Start at most {count} "
                f"processes per node (torchrun --nproc_per_node {count}), or train on the CPU with --device cpu."
            )
        return torch.device("cuda", local_rank)
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {requested}: no CUDA GPU is visible to this process (torch {torch.__version__}).")
    if device.type == "cuda" and device.index is None:  # plain "cuda": this process's GPU (set_device needs an index)
        device = torch.device("cuda", local_rank)
    return device


def pick_amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype; None is full fp32 (TF32 convolutions and matmuls on a GPU, see setup_runtime).

    ``auto`` is fp32 on the CPU and on GPUs with native bf16 (Ampere and newer), fp16 on older GPUs (Kaggle's
    P100, a T4). On an H100 every model trained faster in fp32 (TF32) than under bf16 autocast at batch 32 to
    256 (BENCHMARKS.md): at these sizes the step waits on kernel launches, and autocast adds cast kernels
    while TF32 already runs the convolutions on tensor cores. Older GPUs have no TF32, so there fp16 is
    where their speed is (not measured here: no such GPU was available). bf16 is still there by name.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise RuntimeError("precision fp16 needs a CUDA GPU; use fp32 or bf16 on the CPU.")
        return torch.float16
    if device.type != "cuda" or has_native_bf16(device):
        return None
    return torch.float16


def has_native_bf16(device: torch.device) -> bool:
    """Whether the GPU computes in bf16 natively: compute capability 8.0 (Ampere) and newer, or ROCm.

    Not ``torch.cuda.is_bf16_supported()``: by default it also says yes where bf16 is only emulated, as on
    Kaggle's P100 (capability 6.0), where bf16 autocast is slow; fp16 with loss scaling is the P100's choice.
    """
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


def copy_all(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """``target.copy_(source)`` for each pair: in one launch on a GPU (``torch._foreach_copy_``, torch >= 2.1)
    when all are on one device, one copy at a time otherwise."""
    if targets and hasattr(torch, "_foreach_copy_") and len({t.device for t in targets + sources}) == 1:
        torch._foreach_copy_(targets, sources)
    else:
        for target, source in zip(targets, sources):
            target.copy_(source)


@contextlib.contextmanager
def exact_float32():
    """Inside: CUDA matrix products and cuDNN convolutions in full float32, TF32 off; the settings before are
    restored after. For the metric's features: cuDNN computes float32 convolutions in TF32 by default on
    Ampere and newer GPUs (10 bits of mantissa), and training turns TF32 on for matrix products too, so
    without this the same images would get other features, and another FID, on an H100 than on a CPU or on
    Kaggle's 2019 hardware. No effect on a CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def setup_runtime(precision: str = "auto", channels_last: bool = True, device: str = "auto") -> Runtime:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), start the process group if needed,
    and decide device and precision."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls/convs: free speed on Ampere+, GAN-safe
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Runtime(
        device=dev,
        amp_dtype=pick_amp_dtype(precision, dev),
        channels_last=channels_last and dev.type == "cuda",
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
    )
