"""Atomic loads/stores, fences and a clock for numba kernels over shared memory.

Why this exists: a numba loop such as ``while head[0] == last: pass`` over shared memory
never exits, because LLVM hoists the plain load out of the loop. Every index read or written
across processes goes through ``load_acquire`` / ``store_release`` below, which emit LLVM
atomic instructions. On x86-64 (TSO) they compile to plain ``mov`` instructions; what they buy
is that the compiler may neither cache nor reorder them.

All helpers work on 1-D ``int64`` arrays (views over the shared mapping); callers index words.
They are cacheable (no ctypes globals), so ``cache=True`` kernels that use them load from disk.
numba's cache does not track such dependencies: ``bog.shm.kernel_cache`` (run at the end of
this module) discards the cached kernels whenever a kernel source, this file included, changed.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
_X86 = platform.machine() in ("x86_64", "AMD64")
_TIMESPEC = ir.LiteralStructType([ir.IntType(64), ir.IntType(64)])  # struct timespec, 64-bit


def _item_pointer(context, builder, arr_ty, arr_val, idx_val):
    ary = context.make_array(arr_ty)(context, builder, arr_val)
    return cgutils.get_item_pointer(
        context, builder, arr_ty, ary, [idx_val], wraparound=False, boundscheck=False
    )


@intrinsic
def load_acquire(typingctx, arr, idx):
    """``arr[idx]`` as an acquire load (never hoisted, later loads not moved before it)."""
    sig = arr.dtype(arr, idx)

    def codegen(context, builder, sig, args):
        ptr = _item_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", align=8)

    return sig, codegen


@intrinsic
def store_release(typingctx, arr, idx, val):
    """``arr[idx] = val`` as a release store (earlier stores are visible before it)."""
    sig = types.void(arr, idx, val)

    def codegen(context, builder, sig, args):
        arr_ty = sig.args[0]
        ptr = _item_pointer(context, builder, arr_ty, args[0], args[1])
        v = context.cast(builder, args[2], sig.args[2], arr_ty.dtype)
        builder.store_atomic(v, ptr, "release", align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fence_release(typingctx):
    """Stores before the fence are not reordered after stores following it."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        builder.fence("release")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fence_acquire(typingctx):
    """Loads after the fence are not reordered before loads preceding it."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        builder.fence("acquire")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def clock_ns(typingctx, clock_id):
    """``clock_gettime(clock_id)`` in nanoseconds, ~20 ns through the vDSO."""
    sig = types.int64(clock_id)

    def codegen(context, builder, sig, args):
        i64, i32, ts_t = ir.IntType(64), ir.IntType(32), _TIMESPEC
        fnty = ir.FunctionType(i32, [i32, ts_t.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cgutils.alloca_once(builder, ts_t)
        clk = context.cast(builder, args[0], sig.args[0], types.int32)
        builder.call(fn, [clk, ts])
        sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return sig, codegen


@intrinsic
def sleep_ns(typingctx, ns):
    """``nanosleep`` for ``ns`` nanoseconds (gives the core away; for idle back-off only)."""
    sig = types.void(ns)

    def codegen(context, builder, sig, args):
        i64, i32, ts_t = ir.IntType(64), ir.IntType(32), _TIMESPEC
        fnty = ir.FunctionType(i32, [ts_t.as_pointer(), ts_t.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "nanosleep")
        ts = cgutils.alloca_once(builder, ts_t)
        v = context.cast(builder, args[0], sig.args[0], types.int64)
        billion = ir.Constant(i64, 1_000_000_000)
        builder.store(builder.sdiv(v, billion), cgutils.gep_inbounds(builder, ts, 0, 0))
        builder.store(builder.srem(v, billion), cgutils.gep_inbounds(builder, ts, 0, 1))
        builder.call(fn, [ts, ir.Constant(ts_t.as_pointer(), None)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def cpu_relax(typingctx):
    """The x86 ``pause`` hint for spin loops (a no-op elsewhere)."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


# numba's cache does not know what its kernels froze from other modules: discard it when any
# kernel source changed (every kernel module imports this one before its first call)
from bog.shm.kernel_cache import ensure_fresh as _ensure_fresh  # noqa: E402

_ensure_fresh()
