// The C interface between a compiled kernel module and the emu runtime library.
// Both sides include this file; the Python side knows these names too (ops_emu.py).
#ifndef GPUTRACK_EMU_ABI_H
#define GPUTRACK_EMU_ABI_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// The built-in variables of one CUDA thread, handed to the kernel body on every call.
typedef struct {
    unsigned tx, ty, tz;  // threadIdx
    unsigned bx, by, bz;  // blockIdx
    unsigned dx, dy, dz;  // blockDim
    unsigned gx, gy, gz;  // gridDim
} gputrack_emu_ids;

// Every fiber stack is this many bytes, aligned to its size, with a gputrack_emu_fiber_header
// at its top: kernel code finds its built-in variables from the stack pointer alone, which is
// much cheaper than thread_local access from a dlopen()ed library.
#define GPUTRACK_EMU_STACK_BYTES (128 * 1024)
#define GPUTRACK_EMU_HEADER_BYTES 64
typedef struct {
    gputrack_emu_ids ids;  // of the CUDA thread running on this fiber
    void* worker;          // the runtime's scheduler for this OS thread
} gputrack_emu_fiber_header;

// Runs one CUDA thread of the kernel: unpacks `args` (like cuLaunchKernel's kernelParams).
typedef void (*gputrack_emu_body)(void** args, const gputrack_emu_ids* ids);
// Called on the worker's OS thread before each block: poisons the block's shared memory.
// Returns NULL, or why the block cannot run (the launch then fails with that reason).
typedef const char* (*gputrack_emu_block_hook)(size_t shared_bytes);

// Synchronous launch. Returns 0, or -1 with the reason in gputrack_emu_last_error().
int gputrack_emu_launch(gputrack_emu_body body, gputrack_emu_block_hook hook,
                        const unsigned grid[3], const unsigned block[3],
                        size_t shared_bytes, void** args);
const char* gputrack_emu_last_error(void);
int gputrack_emu_worker_count(void);
// Threads of a block start (and leave barriers) in reverse index order from now on: a kernel
// whose results change with it has a race between its threads.
void gputrack_emu_set_reverse_order(int reverse);
const char* gputrack_emu_context_switch(void);

// ---- shared memory poisoning ----
// All the thread_local storage of a kernel module is its shared memory: static __shared__
// variables (`thread_local` in cuda_emu.h) and the buffers behind `extern __shared__` arrays.
// Where this OS thread's copy lies is found once per module (from the module's PT_TLS segment)
// and kept in the module's `layout`.
typedef struct {
    int state;             // 0: not looked up yet, 1: found, -1: not found
    size_t anchor_offset;  // of the module's anchor variable in its TLS block
    size_t begin, end;     // the zero-initialised part of the TLS block (.tbss), poisoned
} gputrack_emu_tls_layout;
typedef struct {
    const void* begin;
    size_t bytes;
} gputrack_emu_span;
// Fills this OS thread's shared memory of a module (found through `anchor`, a thread_local of
// the module) with the poison pattern, except the `keep` spans (the unused tail of each dynamic
// shared buffer). The pattern: 0x7FFF in every aligned 2 bytes (bytes FF 7F FF 7F ...), which
// reads as NaN in half, bfloat16, float and double, and as a large positive number, never 0
// or -1, in 16/32/64-bit integers. Returns NULL, or an error.
const char* gputrack_emu_poison_shared(gputrack_emu_tls_layout* layout, const void* anchor,
                                       const gputrack_emu_span* keep, int n_keep);

// ---- guard pages (GPUTRACK_EMU_GUARD) ----
// Room for `bytes` of device array data right against a no-access page: the page after its
// end (`before` == 0; the start is 16-byte aligned, so an array whose size is not a multiple of
// 16 ends up to 15 bytes short of it) or the page before its start (`before` != 0). A kernel
// that touches the page fails its launch with an error naming `label` and the byte offset.
// Returns NULL if memory cannot be mapped.
void* gputrack_emu_guard_alloc(size_t bytes, int before, const char* label);
void gputrack_emu_guard_free(void* data);

// Block barrier (__syncthreads and its _count/_and/_or forms).
enum { GPUTRACK_EMU_BAR_SYNC, GPUTRACK_EMU_BAR_COUNT, GPUTRACK_EMU_BAR_AND, GPUTRACK_EMU_BAR_OR };
int gputrack_emu_barrier(int op, int predicate);

// Warp collectives. `site` tells __activemask() call sites apart.
enum {
    GPUTRACK_EMU_SHFL_IDX, GPUTRACK_EMU_SHFL_UP, GPUTRACK_EMU_SHFL_DOWN, GPUTRACK_EMU_SHFL_XOR,
    GPUTRACK_EMU_BALLOT, GPUTRACK_EMU_ANY, GPUTRACK_EMU_ALL, GPUTRACK_EMU_SYNCWARP,
    GPUTRACK_EMU_ACTIVEMASK, GPUTRACK_EMU_MATCH_ANY, GPUTRACK_EMU_MATCH_ALL,
    GPUTRACK_EMU_REDUCE_ADD, GPUTRACK_EMU_REDUCE_MIN_U, GPUTRACK_EMU_REDUCE_MAX_U,
    GPUTRACK_EMU_REDUCE_MIN_I, GPUTRACK_EMU_REDUCE_MAX_I, GPUTRACK_EMU_REDUCE_AND,
    GPUTRACK_EMU_REDUCE_OR, GPUTRACK_EMU_REDUCE_XOR
};
unsigned long long gputrack_emu_warp(int op, unsigned mask, unsigned long long value, int param,
                                     int width, const void* site);

// A device-side assert or __trap(): ends the launch with an error; never returns.
void gputrack_emu_fail(const char* what, const char* file, int line) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif
