"""Fake CUDA on a CPU build of torch: widerl's GPU path checked without a GPU.

Under `torch._subclasses.fake_tensor.FakeTensorMode` tensors can live on device "cuda" on a
machine without one: every op checks devices, shapes and dtypes (mixing a cuda and a cpu
tensor raises `FakeTensorDeviceMismatchError`, as CUDA would) and no kernel runs. A run of
widerl built on such a device shows that nothing in it crosses devices by mistake. The fake
mode needs help to get that far; each piece below says why it is needed. All of it is
switched on by `fake_cuda()` and undone when the context ends.

1. CUDA for c10 and ATen (`SHIM_SOURCE`, C++). Ops that enter a device guard for their
   tensors' device (`copy_`, `index_put_`, `.to`) ask c10 for CUDA's `DeviceGuardImpl`, which
   a CPU build lacks ("PyTorch is not linked with support for cuda devices"): c10 ships
   `FakeGuardImpl<CUDA>` for tests, and the shim registers it. The autograd engine asks ATen
   for the accelerator's current stream ("Cannot access accelerator device when none is
   available"): the shim registers CUDA hooks that say CUDA is built and has one device.
   ATen reads its CUDA hooks once, when torch is imported, so the shim must be loaded before
   torch: the checks run in a fresh interpreter (`run_checks`) that loads the shim first. The
   shim is compiled once per torch build into `SHIM_CACHE` with the C++ compiler torch's
   extensions use; without a compiler the checks skip with that reason.
2. CUDA generators (`FakeCudaGenerator`). `torch.Generator("cuda")` needs CUDA's library. A
   stand-in reports device cuda and keeps a state of CUDA's format (16 bytes: seed and offset)
   whose `set_state` refuses any other size, as CUDA's does; widerl makes every device
   generator through `widerl.replay.generators.device_generator`, which is replaced. A random op
   given a generator of the wrong device raises, as it would on CUDA (`_CudaChecks`).
3. `torch.cuda` without CUDA: `is_available`, the global RNG state, free memory, bf16
   support and the device's name answer as a GPU machine's would, and its lazy initialisation (which
   torch.compile's stream tracking triggers) does nothing (`_CUDA_STUBS`).
4. Module moves. `nn.Module.to` swaps a fake parameter's tensor for the moved one
   (`torch.utils.swap_tensors`), which refuses tensors with weak references; the fake mode's
   own memo holds one to every view it made (a parameter is a detached view). The stand-in
   drops those memo entries first (they only serve aliasing of tensors converted from real
   ones, which a module move does not need).
5. Host reads. A fake tensor has no values, so a read of one on the host (`.cpu()`, `.item()`,
   `.tolist()`) cannot give real numbers. Outside the learning step, where widerl reads on
   purpose (actions for the env, a metrics row, a checkpoint), the read gives placeholders:
   zeros for numbers, True for booleans, so that envs step and rows are written; a tensor
   copied from the host and not written since gives back the values it was copied with. Inside
   `no_host_reads()` (the learning step) any read of a cuda tensor on the host, and any CPU
   tensor given to an op on cuda tensors (even a 0-dim one, which CUDA would copy from the
   host each time), fails the check. Ops on host tensors alone run for real (the envs' data,
   the replay's host-side bookkeeping): only what is on cuda is fake.
6. Checkpoints. `torch.save` cannot pickle a fake tensor: the stand-in fails on any cuda
   tensor (widerl's checkpoints hold CPU tensors only, so that they load anywhere) and writes
   placeholders for any other fake one. `torch.load` reads real tensors, outside the mode, and
   with a cuda `map_location` moves them onto the fake device, as a load onto a GPU would.

What it cannot check: numbers (no kernel runs, so a wrong result, a NaN or a slow kernel goes
unseen), CUDA graphs, streams and memory use, inductor's CUDA code (the compiled step is traced
with aot_eager), and behaviour that depends on values read back (divergence, priorities).
`benchmarks/gpu_check.sh` checks those on a GPU.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map_only
from torch.utils.weak import WeakIdKeyDictionary

CUDA_STATE_BYTES = 16  # torch.cuda.get_rng_state(): the Philox seed and offset, 8 bytes each


class HostRead(AssertionError):
    """A cuda tensor read on the host, or a CPU tensor given to a cuda op, inside the step."""


# --- 1. the shim -------------------------------------------------------------------------------
SHIM_SOURCE = r"""
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/impl/FakeGuardImpl.h>

namespace {
C10_REGISTER_GUARD_IMPL(CUDA, c10::impl::FakeGuardImpl<c10::DeviceType::CUDA>);
}

namespace at {
// Looked up by the name "CUDAHooks", the one the CUDA build registers.
struct FakeCudaHooks : public CUDAHooksInterface {
  explicit FakeCudaHooks(CUDAHooksArgs) {}
  bool hasCUDA() const override { return true; }
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return true; }
  bool hasPrimaryContext(DeviceIndex) const override { return true; }
  DeviceIndex deviceCount() const override { return 1; }
  DeviceIndex current_device() const override { return 0; }
  DeviceIndex getCurrentDevice() const override { return 0; }
  int getNumGPUs() const override { return 1; }
};
C10_REGISTER_CLASS(CUDAHooksRegistry, CUDAHooks, FakeCudaHooks);
}  // namespace at
"""
SHIM_CACHE = Path.home() / ".cache" / "widerl" / "fake-cuda"


def build_shim() -> Path:
    """The compiled shim for this torch, built once (about 20 s); `Unavailable` (a one-line
    reason) where it cannot be built."""
    import torch.utils.cpp_extension as ext

    if torch.cuda.is_available():
        raise Unavailable("a real CUDA device is present: the CUDA tests run instead")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    key = hashlib.sha256(f"{SHIM_SOURCE}{torch.__version__}{abi}".encode()).hexdigest()[:16]
    out = SHIM_CACHE / f"shim-{key}.so"
    if out.is_file():
        return out
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++"]
    cxx = next((found for n in names if (found := shutil.which(n))), None)
    if cxx is None:
        raise Unavailable(f"no C++ compiler ({' or '.join(names)}) to build the fake-CUDA shim")
    SHIM_CACHE.mkdir(parents=True, exist_ok=True)
    src = SHIM_CACHE / f"shim-{key}.cpp"
    src.write_text(SHIM_SOURCE)
    (lib,) = ext.library_paths()
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = [cxx, "-shared", "-fPIC", "-std=c++17", "-O1", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
           *(f"-I{d}" for d in ext.include_paths()), str(src), f"-L{lib}", f"-Wl,-rpath,{lib}",
           "-lc10", "-ltorch_cpu", "-o", str(tmp)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no output"])[0]
        raise Unavailable(f"the fake-CUDA shim does not compile here: {first}")
    os.replace(tmp, out)  # atomic: a concurrent build writes the same file
    return out


class Unavailable(Exception):
    """Why fake CUDA cannot run here (one line)."""


# The first lines of the fresh interpreter: the shim before torch (piece 1), then the check.
_BOOT = """
import ctypes, importlib, json, os, sys
ctypes.CDLL(sys.argv[1], mode=os.RTLD_GLOBAL)
sys.path[:0] = [sys.argv[2], *(os.path.join(sys.argv[2], d) for d in os.listdir(sys.argv[2]))]
module, name = sys.argv[3].split(":")
getattr(importlib.import_module(module), name)(**json.loads(sys.argv[4]))
"""


def run_checks(target: str, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run `module:function(**kwargs)` (a module in tests/ or one of its folders) in a fresh
    interpreter with the shim loaded; its exit status and output come back. `Unavailable`
    where fake CUDA cannot run."""
    shim = build_shim()
    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-c", _BOOT, str(shim), tests, target, json.dumps(kwargs)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def check(target: str, **kwargs: Any) -> None:
    """`run_checks` for a test: a skip (with the reason) where fake CUDA cannot run, a failure
    with the check's output where it fails."""
    import pytest

    try:
        done = run_checks(target, **kwargs)
    except Unavailable as e:
        pytest.skip(str(e))
    assert done.returncode == 0, f"{target} failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"


def shim_loaded() -> bool:
    """Whether this interpreter loaded the shim before torch (ATen then reports CUDA as the
    accelerator)."""
    return torch.accelerator.current_accelerator() is not None


# --- 2. generators ---------------------------------------------------------------------------
class FakeCudaGenerator(torch.Generator):
    """A CPU generator that says it lives on cuda, with CUDA's state format. Random ops under
    the fake mode draw nothing, so which numbers it would give does not matter."""

    def __new__(cls, device: torch.device | str = "cuda") -> FakeCudaGenerator:
        self = super().__new__(cls, "cpu")
        self._device = torch.device(device)
        self._offset = 0
        return self

    def __init__(self, device: torch.device | str = "cuda") -> None:
        pass

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self._device

    def get_state(self) -> torch.Tensor:
        seed = torch.tensor([self.initial_seed(), self._offset], dtype=torch.int64)
        return seed.view(torch.uint8).clone()

    def set_state(self, state: torch.Tensor) -> FakeCudaGenerator:
        if state.numel() != CUDA_STATE_BYTES or state.dtype != torch.uint8:
            raise RuntimeError("RNG state is wrong size")  # CUDA's own message
        seed, self._offset = state.view(torch.int64).tolist()
        super().manual_seed(seed)
        return self


def _device_generator(device: torch.device | str, seed: int) -> torch.Generator:
    if torch.device(device).type == "cuda":
        return FakeCudaGenerator(device).manual_seed(int(seed))
    return torch.Generator(device=device).manual_seed(int(seed))


class _CudaChecks(TorchFunctionMode):
    """What CUDA refuses before any op runs: a random op whose generator is on another device
    than its output ("Expected a 'cuda' device type for generator but found 'cpu'"), and
    `.numpy()` of a device tensor (the fake mode's own message would not say why)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is torch.Tensor.numpy and args[0].device.type == "cuda":
            raise TypeError(
                f"can't convert {args[0].device} device type tensor to numpy. Use "
                "Tensor.cpu() to copy the tensor to host memory first."
            )
        g = kwargs.get("generator")
        out = func(*args, **kwargs)
        drawn = isinstance(g, torch.Generator) and isinstance(out, torch.Tensor)
        if drawn and out.device.type != g.device.type:
            raise RuntimeError(
                f"{func.__name__}: a generator on {g.device.type} drew a tensor on "
                f"{out.device}: expected a '{out.device.type}' device type for generator"
            )
        return out


# --- 3. torch.cuda ---------------------------------------------------------------------------
def _cuda_rng_state(device: Any = "cuda") -> torch.Tensor:
    return FakeCudaGenerator().manual_seed(0).get_state()


def _set_cuda_rng_state(state: torch.Tensor, device: Any = "cuda") -> None:
    FakeCudaGenerator().set_state(state)  # the size check CUDA makes


FAKE_GPU_BYTES = 80 * 2**30  # an H100's memory

_CUDA_STUBS: dict[str, Any] = {
    "is_available": lambda: True,
    "device_count": lambda: 1,
    "current_device": lambda: 0,
    "get_device_name": lambda *a: "fake CUDA (FakeTensorMode)",
    "get_rng_state": _cuda_rng_state,
    "set_rng_state": _set_cuda_rng_state,
    "mem_get_info": lambda *a: (FAKE_GPU_BYTES, FAKE_GPU_BYTES),
    "synchronize": lambda *a: None,
    "_lazy_init": lambda: None,
    "is_bf16_supported": lambda *a, **k: True,  # an A100's or H100's answer (--amp bf16)
}


# --- 4 and 5: the mode ------------------------------------------------------------------------
def _placeholder(t: torch.Tensor) -> torch.Tensor:
    """A real CPU tensor like `t` holding what a host read of fake values gives."""
    with unset_fake_temporarily():
        if t.dtype == torch.bool:
            return torch.ones(t.shape, dtype=t.dtype)
        return torch.zeros(t.shape, dtype=t.dtype)


def _on_cuda(kwargs: dict[str, Any]) -> bool:
    device = kwargs.get("device")
    return device is not None and torch.device(device).type == "cuda"


def _on_cpu(kwargs: dict[str, Any]) -> bool:
    device = kwargs.get("device")
    return device is not None and torch.device(device).type == "cpu"


class FakeCuda(FakeTensorMode):
    """FakeTensorMode with the host-read policy of piece 5."""

    # The mode would otherwise copy constant tensors to the device for real once
    # torch.cuda.is_available() says yes (the stub of piece 3).
    avoid_device_init = True

    def __init__(self) -> None:
        super().__init__(allow_non_fake_inputs=True)
        self.step_depth = 0
        self.host_reads = 0  # placeholders handed out (reads widerl makes on purpose)
        # The values of fake tensors copied from real host ones and not written since: what a
        # host read of them gives back (a checkpoint loaded onto the device, say).
        self.known: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        if not any(isinstance(t, FakeTensor) for t in tensors) and not _on_cuda(kwargs):
            with unset_fake_temporarily():  # the host's own work runs for real (piece 5)
                return func(*args, **kwargs)
        on_cuda = [t for t in tensors if t.device.type == "cuda"]
        if func is torch.ops.aten._local_scalar_dense.default and isinstance(args[0], FakeTensor):
            return self._host_read(func, args[0], scalar=True)
        if func is torch.ops.aten._to_copy.default and on_cuda and _on_cpu(kwargs):
            # `.cpu()`, `.to("cpu")`: the fake mode would fill a real host tensor with nothing
            real = self._host_read(func, args[0], scalar=False)
            return real.to(kwargs.get("dtype") or real.dtype)
        if func is torch.ops.aten.copy_.default and not isinstance(args[0], FakeTensor) and on_cuda:
            # `.cpu()` allocates a real host tensor and copies into it
            return args[0].copy_(self._host_read(func, args[1], scalar=False))
        if self.step_depth and on_cuda:
            cpu = [t for t in tensors if t.device.type == "cpu"]
            if cpu:
                raise HostRead(
                    f"{func}: a CPU tensor {tuple(cpu[0].shape)} given to an op on cuda "
                    "tensors inside the learning step"
                )
        self._forget_written(func, args, kwargs)
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if on_cuda and isinstance(out, FakeTensor) and out.device.type == "cpu":
            return self._host_read(func, out, scalar=False)
        copied = func is torch.ops.aten._to_copy.default and _on_cuda(kwargs)
        if copied and not isinstance(args[0], FakeTensor):
            self.known[out] = args[0].detach().to(out.dtype, copy=True)
        return out

    def _forget_written(self, func: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        """A tensor an op writes (and the tensor it is a view of) no longer holds the value
        it was copied with."""
        schema = func._schema.arguments
        for i, arg in enumerate(schema):
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            written = arg.alias_info is not None and arg.alias_info.is_write
            for t in value if isinstance(value, list | tuple) else [value]:
                if written and isinstance(t, FakeTensor):
                    self.known.pop(t, None)
                    if t._base is not None:
                        self.known.pop(t._base, None)

    def _host_read(self, func: Any, t: torch.Tensor, scalar: bool) -> Any:
        if self.step_depth:
            raise HostRead(
                f"{func}: a host synchronisation (a cuda tensor {tuple(t.shape)} read on the "
                "host) inside the learning step"
            )
        self.host_reads += 1
        value = self.known.get(t) if isinstance(t, FakeTensor) else None
        real = _placeholder(t) if value is None else value.to(t.dtype, copy=True)
        return real.item() if scalar else real

    @contextlib.contextmanager
    def no_host_reads(self) -> Iterator[None]:
        """The learning step: a host read or a CPU tensor among cuda ones fails (HostRead)."""
        self.step_depth += 1
        try:
            yield
        finally:
            self.step_depth -= 1

    @staticmethod
    def forget_views(t: FakeTensor) -> None:
        """Drop every fake mode's memo entries of `t` (piece 4). A deep copy of a fake tensor
        makes a fake mode of its own, so the memos that hold `t` are found through its weak
        references: each is the key or the value of an entry of a dict of weak references
        (a WeakValueDictionary or torch's WeakIdKeyDictionary); nothing else holds them."""
        for ref in weakref.getweakrefs(t):
            for holder in gc.get_referrers(ref):
                if not isinstance(holder, dict):
                    continue
                if all(isinstance(v, weakref.ref) for v in holder.values()):
                    for key in [k for k, v in holder.items() if v is ref]:
                        del holder[key]
                if all(isinstance(k, weakref.ref) for k in holder):
                    holder.pop(ref, None)


def _real(t: torch.Tensor) -> torch.Tensor:
    """A fake CPU tensor as a placeholder; a cuda tensor fails (piece 6)."""
    if t.device.type != "cpu":
        raise AssertionError(
            f"a checkpoint holds a tensor {tuple(t.shape)} on {t.device}: it would not load "
            "on a machine without that device"
        )
    return _placeholder(t) if isinstance(t, FakeTensor) else t


@contextlib.contextmanager
def fake_cuda() -> Iterator[FakeCuda]:
    """Everything above, for one block: tensors on "cuda" are fake ones."""
    if not shim_loaded():
        raise RuntimeError("fake_cuda() runs in an interpreter started by run_checks")
    import widerl.replay.generators

    mode = FakeCuda()
    swap = torch.utils.swap_tensors

    def swap_fake(t1: torch.Tensor, t2: torch.Tensor) -> None:
        for t in (t1, t2):
            if isinstance(t, FakeTensor) and weakref.getweakrefcount(t):
                mode.forget_views(t)
        swap(t1, t2)

    save, load = torch.save, torch.load

    def save_real(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        save(tree_map_only(torch.Tensor, _real, obj), f, *args, **kwargs)

    def load_real(f: Any, map_location: Any = None, **kwargs: Any) -> Any:
        with unset_fake_temporarily():
            obj = load(f, map_location="cpu", **kwargs)
        if map_location is not None and torch.device(map_location).type == "cuda":
            # what a load onto a GPU gives: device tensors
            obj = tree_map_only(torch.Tensor, lambda t: t.to("cuda"), obj)
        return obj

    with contextlib.ExitStack() as stack:
        patch = stack.enter_context(_Patches())
        patch(torch, "save", save_real)
        patch(torch, "load", load_real)
        patch(widerl.replay.generators, "device_generator", _device_generator)
        patch(torch.utils, "swap_tensors", swap_fake)
        for name, stub in _CUDA_STUBS.items():
            patch(torch.cuda, name, stub)
        stack.enter_context(mode)
        stack.enter_context(_CudaChecks())
        yield mode


class _Patches:
    """setattr that the end of the block undoes, last first."""

    def __enter__(self) -> _Patches:
        self.undo: list[tuple[Any, str, Any]] = []
        return self

    def __call__(self, obj: Any, name: str, value: Any) -> None:
        self.undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def __exit__(self, *exc: object) -> None:
        for obj, name, old in reversed(self.undo):
            setattr(obj, name, old)
