"""Where training and encoding run: device names (--device), mixed precision (--amp) and the process group of
a `torchrun` launch (DistributedDataParallel). A device this machine lacks is a one-line error, never a
silent fall-back to the CPU."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from biohash.train.runs import RunError


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """torch.device for auto, cpu, cuda, cuda:N or mps; auto picks a GPU when torch sees one. Under torchrun
    a bare "cuda" (or auto on a GPU machine) is the process's own GPU, cuda:LOCAL_RANK."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise RunError("--device mps: this torch sees no Apple GPU (torch.backends.mps.is_available() is "
                           "False); use --device cpu or auto")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise RunError(f"--device {name}: no CUDA GPU is visible to torch {torch.__version__} ({build}); use "
                           f"--device cpu or auto")
        index = local_rank if name == "cuda" else _index(name)
        if index >= torch.cuda.device_count():
            raise RunError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                           f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    raise RunError(f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps")


def _index(name: str) -> int:
    try:
        return int(name.split(":", 1)[1])
    except ValueError:
        raise RunError(f"unknown device {name!r}; expected cuda:N with N a GPU number") from None


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def check_precision(device: torch.device, amp: str) -> None:
    """Refuse, before a run starts, a precision the device cannot train in."""
    if amp == "fp16" and device.type == "cpu":
        raise RunError("--amp fp16 needs a GPU; on the CPU use --amp bf16 or off")


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass and loss: bf16 (CPU or GPU) or fp16 (GPU only); off is float32."""
    check_precision(device, amp)
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def grad_scaler(device: torch.device, amp: str) -> Any:
    """A gradient scaler for fp16 (its small range underflows gradients); None where none is needed."""
    return torch.amp.GradScaler(device.type) if amp == "fp16" else None


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A batch's tensors on `device` (non-blocking from pinned memory)."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters sit on (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@dataclass(frozen=True)
class Processes:
    """This process's place in a torchrun launch: rank, world size and local rank (0, 1, 0 when alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run folder, validates and evaluates."""
        return self.rank == 0


def processes() -> Processes:
    """This process's rank and world size, read from the variables torchrun sets."""
    return Processes(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))


def join_process_group(device: torch.device) -> Processes:
    """Under torchrun (WORLD_SIZE > 1) join the process group once: NCCL between GPUs, gloo on CPUs."""
    import torch.distributed as dist

    procs = processes()
    if procs.world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return procs


def barrier() -> None:
    """Wait for every process of the group (no-op when alone)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def describe(device: torch.device, amp: str, procs: Processes) -> dict[str, Any]:
    """What environment.json records about where a run trained."""
    out: dict[str, Any] = {"device": str(device), "amp": amp, "world_size": procs.world}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out
