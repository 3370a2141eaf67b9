// The emu runtime: blocks in parallel on a pool of OS threads, the threads of a block as
// fibers on the OS thread that took the block (notes/cpu-emulation.md has the measurements).
//
// A "runner" fiber runs CUDA threads back to back as plain calls. Only when a thread waits
// (barrier or warp collective) does its runner keep the stack, and a new runner takes the next
// thread. A warp collective is released when no lane of its warp can still run; a barrier when
// every thread of the block waits at it or has exited. There is no preemption: a thread that
// spins waiting for another thread of its block (or for another block) hangs.
//
// Every block starts with all its shared memory poisoned (gputrack_emu_poison_shared). With
// GPUTRACK_EMU_GUARD set, ops_emu.py puts each device array against a no-access page
// (gputrack_emu_guard_alloc), and a fault in kernel code ends the launch with an error that
// names the array, like a device-side assert (on_fault below).
//
// Built once into its own shared library; every kernel module links against it.

#include "emu_abi.h"

#include <link.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if !defined(__x86_64__) || defined(GPUTRACK_EMU_UCONTEXT)
#define GPUTRACK_EMU_USE_UCONTEXT 1
#include <ucontext.h>
#endif

namespace {

constexpr int kMaxThreads = 1024;
constexpr int kWarpSize = 32;
constexpr int kMaxWarps = kMaxThreads / kWarpSize;
// Only touched pages cost memory; a generous size keeps printf and local arrays safe.
constexpr size_t kStackBytes = GPUTRACK_EMU_STACK_BYTES;
static_assert((kStackBytes & (kStackBytes - 1)) == 0, "fiber stacks are aligned to their size");
static_assert(sizeof(gputrack_emu_fiber_header) <= GPUTRACK_EMU_HEADER_BYTES, "header fits");

// ---- context switch ---------------------------------------------------------------------

#ifdef GPUTRACK_EMU_USE_UCONTEXT

const char* const kSwitchKind = "ucontext";

struct Context {
    ucontext_t uc;  // points into itself: a Context must never move once used
};

void ucontext_trampoline(unsigned fn_hi, unsigned fn_lo, unsigned arg_hi, unsigned arg_lo) {
    auto fn = reinterpret_cast<void (*)(void*)>((uintptr_t(fn_hi) << 32) | fn_lo);
    fn(reinterpret_cast<void*>((uintptr_t(arg_hi) << 32) | arg_lo));
    std::abort();  // a fiber function never returns
}

void context_init(Context* ctx, char* stack, size_t bytes, void (*fn)(void*), void* arg) {
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = stack;
    ctx->uc.uc_stack.ss_size = bytes;
    ctx->uc.uc_link = nullptr;
    auto f = reinterpret_cast<uintptr_t>(fn), a = reinterpret_cast<uintptr_t>(arg);
    makecontext(&ctx->uc, reinterpret_cast<void (*)()>(ucontext_trampoline), 4,
                unsigned(f >> 32), unsigned(f), unsigned(a >> 32), unsigned(a));
}

void context_switch(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }

#else

// Saves only the callee-saved registers (everything else is dead across a call) and resumes
// with `pop rax; jmp *rax`: a `ret` here would mispredict on every switch.
extern "C" void gputrack_emu_switch_x86(void** save_sp, void* load_sp);
extern "C" void gputrack_emu_fiber_entry();
asm(R"(
    .text
    .p2align 4
    .globl gputrack_emu_switch_x86
    .hidden gputrack_emu_switch_x86
    .type gputrack_emu_switch_x86, @function
gputrack_emu_switch_x86:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    popq %rax
    jmpq *%rax
    .size gputrack_emu_switch_x86, .-gputrack_emu_switch_x86

    .p2align 4
    .globl gputrack_emu_fiber_entry
    .hidden gputrack_emu_fiber_entry
    .type gputrack_emu_fiber_entry, @function
gputrack_emu_fiber_entry:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size gputrack_emu_fiber_entry, .-gputrack_emu_fiber_entry
)");

const char* const kSwitchKind = "x86-64 asm";

struct Context {
    void* sp = nullptr;
};

void context_init(Context* ctx, char* stack, size_t bytes, void (*fn)(void*), void* arg) {
    // A first switch pops r15..rbp and "returns" into fiber_entry, which calls fn(arg) from
    // r13/r12 with the stack 16-byte aligned as the ABI wants at a call.
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top - 72);
    sp[0] = nullptr;                                         // r15
    sp[1] = nullptr;                                         // r14
    sp[2] = reinterpret_cast<void*>(fn);                     // r13
    sp[3] = arg;                                             // r12
    sp[4] = nullptr;                                         // rbx
    sp[5] = nullptr;                                         // rbp
    sp[6] = reinterpret_cast<void*>(&gputrack_emu_fiber_entry);  // "return address"
    ctx->sp = sp;
}

void context_switch(Context* from, Context* to) { gputrack_emu_switch_x86(&from->sp, to->sp); }

#endif

struct Fiber {
    Context ctx;
    char* stack = nullptr;  // kStackBytes, aligned to kStackBytes; the header sits at the top
    gputrack_emu_fiber_header* header = nullptr;
    size_t usable = 0;      // stack bytes below the header
};

Fiber* new_fiber(void* worker) {
    // Map twice the size and trim, to get a stack aligned to its size.
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    void* mem = mmap(nullptr, 2 * kStackBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        std::fprintf(stderr, "gputrack emu: cannot map a fiber stack\n");
        std::abort();
    }
    auto start = reinterpret_cast<uintptr_t>(mem);
    uintptr_t aligned = (start + kStackBytes - 1) & ~(uintptr_t(kStackBytes) - 1);
    if (aligned > start) munmap(mem, aligned - start);
    if (aligned + kStackBytes < start + 2 * kStackBytes)
        munmap(reinterpret_cast<void*>(aligned + kStackBytes),
               start + 2 * kStackBytes - aligned - kStackBytes);
    auto* fiber = new Fiber;
    fiber->stack = reinterpret_cast<char*>(aligned);
    mprotect(fiber->stack, page, PROT_NONE);  // guard page: an overflow faults, not corrupts
    fiber->header = reinterpret_cast<gputrack_emu_fiber_header*>(
        fiber->stack + kStackBytes - GPUTRACK_EMU_HEADER_BYTES);
    fiber->header->worker = worker;
    fiber->usable = kStackBytes - GPUTRACK_EMU_HEADER_BYTES;
    return fiber;
}

// The header of the fiber the caller runs on (kernel code runs on fibers only).
inline gputrack_emu_fiber_header* current_header() {
    char here;
    auto sp = reinterpret_cast<uintptr_t>(&here);
    return reinterpret_cast<gputrack_emu_fiber_header*>(
        (sp | (uintptr_t(kStackBytes) - 1)) + 1 - GPUTRACK_EMU_HEADER_BYTES);
}

// ---- one launch -------------------------------------------------------------------------

struct Launch {
    gputrack_emu_body body;
    gputrack_emu_block_hook hook;
    unsigned grid[3], block[3];
    size_t shared_bytes;
    void** args;
    uint64_t total_blocks;
    bool reverse = false;  // threads of a block start, and leave barriers, last index first
    std::atomic<uint64_t> next_block{0};
    std::atomic<bool> abort{false};
    std::mutex error_mutex;
    std::string error;

    void fail(const std::string& message) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (error.empty()) error = message;
        abort = true;
    }
};

// ---- the per-OS-thread block scheduler --------------------------------------------------

enum State : uint8_t { kUnstarted, kRunning, kReady, kWaitBarrier, kWaitWarp, kDone };

struct Slot {
    Fiber* fiber;  // the stack this thread is suspended on (waiting or ready)
    State state;
    int op;
    unsigned mask;
    int param;
    int width;
    uint64_t group_key;
    uint64_t value;
    uint64_t result;
};

void runner_entry(void* worker);

struct Worker {
    Slot slots[kMaxThreads];
    int warp_pending[kMaxWarps];  // lanes that can still run: unstarted, running or ready
    int warp_waiting[kMaxWarps];  // lanes waiting at a warp collective
    int ready[kMaxThreads];       // FIFO ring of released threads
    int ready_head = 0, ready_count = 0;
    int threads = 0, next_fresh = 0, done = 0, waiting_barrier = 0;
    int current = -1;
    Fiber* current_fiber = nullptr;
    Context scheduler;
    std::vector<Fiber*> all_fibers, idle_fibers;
    gputrack_emu_ids ids{};
    Launch* job = nullptr;
    bool aborting = false;

    void run_blocks(Launch& launch) {
        job = &launch;
        for (;;) {
            uint64_t b = launch.next_block.fetch_add(1, std::memory_order_relaxed);
            if (b >= launch.total_blocks || launch.abort.load(std::memory_order_relaxed)) break;
            run_block(b);
        }
        job = nullptr;
    }

    void run_block(uint64_t linear) {
        const Launch& L = *job;
        ids.gx = L.grid[0], ids.gy = L.grid[1], ids.gz = L.grid[2];
        ids.dx = L.block[0], ids.dy = L.block[1], ids.dz = L.block[2];
        ids.bx = unsigned(linear % L.grid[0]);
        ids.by = unsigned((linear / L.grid[0]) % L.grid[1]);
        ids.bz = unsigned(linear / (uint64_t(L.grid[0]) * L.grid[1]));
        threads = int(L.block[0] * L.block[1] * L.block[2]);
        next_fresh = done = waiting_barrier = 0;
        ready_head = ready_count = 0;
        for (int t = 0; t < threads; ++t) slots[t].state = kUnstarted;
        for (int w = 0; w * kWarpSize < threads; ++w) {
            warp_pending[w] = std::min(kWarpSize, threads - w * kWarpSize);
            warp_waiting[w] = 0;
        }
        if (L.hook) {
            if (const char* why = L.hook(L.shared_bytes)) {
                job->fail(why);
                return;
            }
        }

        for (;;) {
            if (aborting) break;
            if (ready_count > 0) {
                switch_to(pop_ready(), &scheduler);
            } else if (next_fresh < threads) {
                Fiber* runner = take_idle_fiber();
                context_init(&runner->ctx, runner->stack, runner->usable, runner_entry, this);
                current_fiber = runner;
                context_switch(&scheduler, &runner->ctx);
            } else if (done == threads) {
                break;
            } else if (waiting_barrier > 0 && waiting_barrier + done == threads) {
                release_barrier(-1);
            } else {
                job->fail("emu scheduler: threads of a block wait on each other (internal error)");
                aborting = true;
            }
        }
        if (aborting) {  // abandoned stacks are simply reused
            idle_fibers = all_fibers;
            aborting = false;
        }
    }

    Fiber* take_idle_fiber() {
        if (idle_fibers.empty()) {
            all_fibers.push_back(new_fiber(this));
            return all_fibers.back();
        }
        Fiber* f = idle_fibers.back();
        idle_fibers.pop_back();
        return f;
    }

    int pop_ready() {
        int t = ready[ready_head];
        ready_head = (ready_head + 1) % kMaxThreads;
        --ready_count;
        return t;
    }

    // Resume a released thread on its fiber, saving the caller's context in `from`.
    void switch_to(int t, Context* from) {
        Slot& s = slots[t];
        s.state = kRunning;
        current = t;
        current_fiber = s.fiber;
        context_switch(from, &s.fiber->ctx);
    }

    // The running thread waits: go straight to a released thread if there is one (one switch
    // instead of two through the scheduler), else to the scheduler.
    void suspend() {
        Fiber* self = current_fiber;
        if (ready_count > 0) {
            switch_to(pop_ready(), &self->ctx);
        } else {
            context_switch(&self->ctx, &scheduler);
        }
    }

    // The fiber's header carries the built-in variables the kernel code reads.
    void set_thread_ids(Fiber* fiber, int t) {
        gputrack_emu_ids& h = fiber->header->ids;
        h = ids;
        const unsigned bx = ids.dx, by = ids.dy;
        h.tx = unsigned(t) % bx;
        h.ty = (unsigned(t) / bx) % by;
        h.tz = unsigned(t) / (bx * by);
    }

    // Runs fresh threads back to back until none is left; a thread that waits keeps this
    // runner's stack, and the scheduler starts another runner for the next fresh thread.
    [[noreturn]] void runner_loop() {
        Fiber* self = current_fiber;
        while (next_fresh < threads) {
            // A kernel whose result depends on this order has a race between its threads
            // (a shared-memory read with no barrier after the write): the tests run both.
            int t = job->reverse ? threads - 1 - next_fresh++ : next_fresh++;
            slots[t].state = kRunning;
            slots[t].fiber = self;
            current = t;
            set_thread_ids(self, t);
            job->body(job->args, &self->header->ids);
            finish(t);
        }
        idle_fibers.push_back(self);
        suspend();
        std::abort();  // an idle runner is never resumed, only restarted
    }

    void finish(int t) {
        slots[t].state = kDone;
        ++done;
        int w = t / kWarpSize;
        if (--warp_pending[w] == 0 && warp_waiting[w] > 0) release_warp(w, -1);
        if (waiting_barrier > 0 && waiting_barrier + done == threads) release_barrier(-1);
    }

    // A waiting thread can run again: queued, or (the releasing thread itself) running on.
    void release(int t, int keep_running) {
        ++warp_pending[t / kWarpSize];
        if (t == keep_running) {
            slots[t].state = kRunning;
            return;
        }
        slots[t].state = kReady;
        ready[(ready_head + ready_count) % kMaxThreads] = t;
        ++ready_count;
    }

    int barrier(int op, int predicate) {
        const int t = current;
        Slot& s = slots[t];
        s.state = kWaitBarrier;
        s.op = op;
        s.value = predicate != 0;
        s.fiber = current_fiber;
        ++waiting_barrier;
        int w = t / kWarpSize;
        if (--warp_pending[w] == 0 && warp_waiting[w] > 0) release_warp(w, -1);
        // The last thread to arrive releases the barrier and goes on without a switch.
        if (waiting_barrier + done == threads) {
            release_barrier(t);
        } else {
            suspend();
        }
        return int(s.result);
    }

    // `keep_running`: the releasing thread, which continues instead of being queued.
    void release_barrier(int keep_running) {
        int arrived = 0, count = 0;
        for (int t = 0; t < threads; ++t) {
            if (slots[t].state == kWaitBarrier) {
                ++arrived;
                count += int(slots[t].value);
            }
        }
        for (int i = 0; i < threads; ++i) {
            const int t = job->reverse ? threads - 1 - i : i;
            Slot& s = slots[t];
            if (s.state != kWaitBarrier) continue;
            switch (s.op) {
                case GPUTRACK_EMU_BAR_COUNT: s.result = uint64_t(count); break;
                case GPUTRACK_EMU_BAR_AND: s.result = count == arrived; break;
                case GPUTRACK_EMU_BAR_OR: s.result = count > 0; break;
                default: s.result = 0;
            }
            release(t, keep_running);
        }
        waiting_barrier = 0;
    }

    uint64_t warp_op(int op, unsigned mask, uint64_t value, int param, int width,
                     const void* site) {
        const int t = current;
        Slot& s = slots[t];
        s.state = kWaitWarp;
        s.op = op;
        s.mask = mask;
        s.value = value;
        s.param = param;
        s.width = (width >= 1 && width <= kWarpSize && (width & (width - 1)) == 0) ? width
                                                                                  : kWarpSize;
        // Lanes that wait with the same mask act together; __activemask() groups by call site.
        s.group_key = op == GPUTRACK_EMU_ACTIVEMASK ? reinterpret_cast<uintptr_t>(site)
                                                    : (uint64_t(1) << 63) | mask;
        s.fiber = current_fiber;
        int w = t / kWarpSize;
        ++warp_waiting[w];
        if (--warp_pending[w] == 0) {
            release_warp(w, t);  // the last lane to arrive goes on without a switch
        } else {
            suspend();
        }
        return s.result;
    }

    void release_warp(int w, int keep_running) {
        const int base = w * kWarpSize;
        const int lanes = std::min(kWarpSize, threads - base);
        uint32_t waiting = 0;
        for (int l = 0; l < lanes; ++l)
            if (slots[base + l].state == kWaitWarp) waiting |= uint32_t(1) << l;
        const uint64_t first_key = slots[base + __builtin_ctz(waiting)].group_key;
        bool uniform = true;
        for (uint32_t m = waiting; m; m &= m - 1)
            uniform &= slots[base + __builtin_ctz(m)].group_key == first_key;

        uint32_t exited = 0;  // lanes past the block's end count as exited
        for (int l = 0; l < kWarpSize; ++l)
            if (l >= lanes || slots[base + l].state == kDone) exited |= uint32_t(1) << l;

        for (uint32_t m = waiting; m; m &= m - 1) {
            const int l = __builtin_ctz(m);
            uint32_t group = waiting;
            if (!uniform) {
                group = 0;
                for (uint32_t o = waiting; o; o &= o - 1) {
                    const int k = __builtin_ctz(o);
                    if (slots[base + k].group_key == slots[base + l].group_key)
                        group |= uint32_t(1) << k;
                }
            }
            if (slots[base + l].op != GPUTRACK_EMU_ACTIVEMASK) check_mask(w, l, group, exited);
            slots[base + l].result = warp_result(base, l, group);
        }
        // Resumed in the launch's thread order, so that a missing __syncwarp() after a warp
        // collective shows in one of the two orders, as a missing barrier does.
        for (int i = 0; i < kWarpSize; ++i) {
            const int l = job->reverse ? kWarpSize - 1 - i : i;
            if ((waiting >> l) & 1u) release(base + l, keep_running);
        }
        warp_waiting[w] = 0;
    }

    // The Programming Guide leaves a warp collective undefined unless its caller is in its
    // mask and every non-exited lane named there calls it with the same mask: on a GPU it
    // may hang or return garbage, so the emulator fails the launch instead.
    void check_mask(int w, int lane, uint32_t group, uint32_t exited) {
        const unsigned mask = slots[w * kWarpSize + lane].mask;
        char what[256];
        if (!((mask >> lane) & 1u)) {
            std::snprintf(what, sizeof what,
                          "warp collective: the mask %#010x of lane %d of warp %d does not name "
                          "the calling lane (undefined on a GPU)",
                          mask, lane, w);
            fail_here(what);
        }
        const uint32_t absent = mask & ~group & ~exited;
        if (absent) {
            std::snprintf(what, sizeof what,
                          "warp collective: the mask %#010x of lane %d of warp %d names lane %d, "
                          "which did not reach it (it waits at a barrier or at a collective "
                          "with another mask: a GPU would hang or return garbage)",
                          mask, lane, w, __builtin_ctz(absent));
            fail_here(what);
        }
    }

    uint64_t warp_result(int base, int lane, uint32_t group) const {
        const Slot& s = slots[base + lane];
        const int width = s.width;
        const int start = lane & ~(width - 1);
        // Reading a lane outside the group (exited, or not in the mask) is unspecified on a
        // GPU: the poison of shared memory (emu_abi.h), so that a result built on it shows.
        auto from = [&](int src) -> uint64_t {
            return ((group >> src) & 1) ? slots[base + src].value : 0x7fff7fff7fff7fffull;
        };
        auto each = [&](auto&& fn) {
            for (uint32_t m = group; m; m &= m - 1) fn(slots[base + __builtin_ctz(m)]);
        };
        auto ballot = [&] {
            uint32_t bits = 0;
            for (uint32_t m = group; m; m &= m - 1)
                if (slots[base + __builtin_ctz(m)].value) bits |= m & -m;
            return bits;
        };
        // shfl.sync as the PTX ISA defines it: only the low 5 bits of the lane or delta count,
        // and a source lane outside the caller's segment (a later one, for xor) is invalid,
        // which gives the caller's own value.
        const int b = s.param & (kWarpSize - 1);
        switch (s.op) {
            case GPUTRACK_EMU_SHFL_IDX: return from(start + (b & (width - 1)));
            case GPUTRACK_EMU_SHFL_UP: return lane - b < start ? s.value : from(lane - b);
            case GPUTRACK_EMU_SHFL_DOWN:
                return lane + b >= start + width ? s.value : from(lane + b);
            case GPUTRACK_EMU_SHFL_XOR:
                return (lane ^ b) >= start + width ? s.value : from(lane ^ b);
            case GPUTRACK_EMU_BALLOT: return ballot();
            case GPUTRACK_EMU_ANY: return ballot() != 0;
            case GPUTRACK_EMU_ALL: return ballot() == group;
            case GPUTRACK_EMU_ACTIVEMASK: return group;
            case GPUTRACK_EMU_MATCH_ANY: {
                uint32_t same = 0;
                for (uint32_t m = group; m; m &= m - 1)
                    if (slots[base + __builtin_ctz(m)].value == s.value) same |= m & -m;
                return same;
            }
            case GPUTRACK_EMU_MATCH_ALL: {
                bool all = true;
                each([&](const Slot& o) { all &= o.value == s.value; });
                return all ? (uint64_t(1) << 32) | group : 0;
            }
            case GPUTRACK_EMU_REDUCE_ADD: {
                uint32_t sum = 0;
                each([&](const Slot& o) { sum += uint32_t(o.value); });
                return sum;
            }
            case GPUTRACK_EMU_REDUCE_MIN_U:
            case GPUTRACK_EMU_REDUCE_MAX_U: {
                uint32_t r = uint32_t(s.value);
                bool is_min = s.op == GPUTRACK_EMU_REDUCE_MIN_U;
                each([&](const Slot& o) {
                    r = is_min ? std::min(r, uint32_t(o.value)) : std::max(r, uint32_t(o.value));
                });
                return r;
            }
            case GPUTRACK_EMU_REDUCE_MIN_I:
            case GPUTRACK_EMU_REDUCE_MAX_I: {
                int32_t r = int32_t(uint32_t(s.value));
                bool is_min = s.op == GPUTRACK_EMU_REDUCE_MIN_I;
                each([&](const Slot& o) {
                    int32_t v = int32_t(uint32_t(o.value));
                    r = is_min ? std::min(r, v) : std::max(r, v);
                });
                return uint32_t(r);
            }
            case GPUTRACK_EMU_REDUCE_AND: {
                uint32_t r = ~0u;
                each([&](const Slot& o) { r &= uint32_t(o.value); });
                return r;
            }
            case GPUTRACK_EMU_REDUCE_OR: {
                uint32_t r = 0;
                each([&](const Slot& o) { r |= uint32_t(o.value); });
                return r;
            }
            case GPUTRACK_EMU_REDUCE_XOR: {
                uint32_t r = 0;
                each([&](const Slot& o) { r ^= uint32_t(o.value); });
                return r;
            }
            default: return 0;  // __syncwarp
        }
    }

    [[noreturn]] void fail(const char* what, const char* file, int line) {
        char where[640];
        std::snprintf(where, sizeof where, "%s at %s:%d", what, file, line);
        fail_here(where);
    }

    // Ends the launch with `what` and the running CUDA thread's indices; abandons the block.
    [[noreturn]] void fail_here(const char* what) {
        char message[768];
        const gputrack_emu_ids& me = current_fiber->header->ids;
        std::snprintf(message, sizeof message, "%s (block (%u,%u,%u), thread (%u,%u,%u))", what,
                      me.bx, me.by, me.bz, me.tx, me.ty, me.tz);
        job->fail(message);
        aborting = true;
        context_switch(&current_fiber->ctx, &scheduler);  // never resumed: the block is abandoned
        std::abort();
    }
};

void runner_entry(void* worker) { static_cast<Worker*>(worker)->runner_loop(); }

thread_local Worker* tls_worker = nullptr;

Worker& this_worker() {
    if (!tls_worker) tls_worker = new Worker;  // kept for the thread's life, with its stacks
    return *tls_worker;
}

Worker& kernel_worker() { return *static_cast<Worker*>(current_header()->worker); }

// ---- shared memory poison ---------------------------------------------------------------

// 0x7FFF in every aligned 2 bytes: NaN as half, bfloat16, float and double; a large positive
// number in 16/32/64-bit integers (emu_abi.h).
void poison(char* p, char* end) {
    auto byte_at = [](const char* q) {
        return char((reinterpret_cast<uintptr_t>(q) & 1) ? 0x7f : 0xff);
    };
    for (; p < end && (reinterpret_cast<uintptr_t>(p) & 7); ++p) *p = byte_at(p);
    const uint64_t word = 0x7fff7fff7fff7fffull;
    for (; end - p >= 8; p += 8) std::memcpy(p, &word, 8);
    for (; p < end; ++p) *p = byte_at(p);
}

std::mutex g_layout_mutex;

// The dynamic linker's own lookup of a module's TLS block for the calling thread (x86-64 and
// AArch64 glibc export it); offset 0 is the start of the block.
struct TlsIndex {
    unsigned long module, offset;
};
extern "C" void* __tls_get_addr(TlsIndex*);

struct TlsSearch {
    uintptr_t inside;  // an address in the module's loaded segments
    size_t modid = 0, filesz = 0, memsz = 0;
    bool found = false;
};

// The loaded object that holds `inside`, and its PT_TLS segment. (dlpi_tls_data is no help:
// it is NULL whenever this thread's DTV is older than the last dlopen of a module with TLS.)
int find_tls_segment(dl_phdr_info* info, size_t, void* data) {
    auto* search = static_cast<TlsSearch*>(data);
    bool holds = false;
    const ElfW(Phdr)* tls = nullptr;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        if (ph.p_type == PT_LOAD && search->inside >= lo && search->inside < lo + ph.p_memsz)
            holds = true;
        if (ph.p_type == PT_TLS) tls = &ph;
    }
    if (!holds) return 0;
    if (tls && info->dlpi_tls_modid) {
        search->modid = info->dlpi_tls_modid;
        search->filesz = tls->p_filesz;
        search->memsz = tls->p_memsz;
        search->found = true;
    }
    return 1;
}

int tls_layout(gputrack_emu_tls_layout* layout, const void* anchor) {
    int state = __atomic_load_n(&layout->state, __ATOMIC_ACQUIRE);
    if (state != 0) return state;
    std::lock_guard<std::mutex> lock(g_layout_mutex);
    state = __atomic_load_n(&layout->state, __ATOMIC_ACQUIRE);
    if (state != 0) return state;
    TlsSearch search;
    search.inside = reinterpret_cast<uintptr_t>(layout);  // the module's own .bss
    dl_iterate_phdr(find_tls_segment, &search);
    state = -1;
    if (search.found) {
        TlsIndex index{search.modid, 0};
        const auto start = reinterpret_cast<uintptr_t>(__tls_get_addr(&index));
        const auto at = reinterpret_cast<uintptr_t>(anchor);
        if (at >= start && at < start + search.memsz) {
            layout->anchor_offset = at - start;
            layout->begin = search.filesz;  // .tdata (initialised) first, then .tbss
            layout->end = search.memsz;
            state = 1;
        }
    }
    __atomic_store_n(&layout->state, state, __ATOMIC_RELEASE);
    return state;
}

// ---- guard pages and faults in kernel code ----------------------------------------------

struct GuardSlot {
    std::atomic<int> live{0};  // read by the fault handler without a lock
    uintptr_t map = 0;         // the mapping, guard page included
    size_t map_bytes = 0;
    uintptr_t data = 0;  // the array's first byte
    size_t bytes = 0;
    char label[200] = {};
};

constexpr int kGuardSlots = 4096;
GuardSlot g_guards[kGuardSlots];
std::mutex g_guard_mutex;
struct sigaction g_previous_segv;
bool g_fault_handler = false;

[[noreturn]] void kernel_fault(uintptr_t address, int write) {
    const char* kind = write == 1 ? "write" : write == 0 ? "read" : "access";
    char what[512];
    const GuardSlot* hit = nullptr;
    for (const GuardSlot& g : g_guards) {
        if (g.live.load(std::memory_order_acquire) && address >= g.map &&
            address < g.map + g.map_bytes) {
            hit = &g;
            break;
        }
    }
    if (hit) {
        std::snprintf(what, sizeof what,
                      "out-of-bounds %s at byte offset %lld of %s (%zu bytes, guard page %s)",
                      kind, static_cast<long long>(address - hit->data), hit->label, hit->bytes,
                      address < hit->data ? "before it" : "after it");
    } else {
        std::snprintf(what, sizeof what, "invalid memory %s at address %#lx (no device array)",
                      kind, static_cast<unsigned long>(address));
    }
    kernel_worker().fail_here(what);
}

// SIGSEGV while a CUDA thread runs on a fiber: the handler makes the fiber call kernel_fault,
// which fails the launch and abandons the block, as a device-side assert does. A fault
// anywhere else goes to the handler that was there before.
void on_fault(int, siginfo_t* info, void* context) {
    auto* uc = static_cast<ucontext_t*>(context);
    Worker* w = tls_worker;
#if defined(__x86_64__)
    const auto sp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
    const auto sp = static_cast<uintptr_t>(uc->uc_mcontext.sp);
#else
    const uintptr_t sp = 0;
#endif
    const Fiber* f = w && w->job ? w->current_fiber : nullptr;
    const auto lo = f ? reinterpret_cast<uintptr_t>(f->stack) : 0;
    // Below 4 KiB of a fiber's stack the handler itself could not run: left to the default.
    if (!f || sp < lo + 4096 || sp >= lo + kStackBytes) {
        sigaction(SIGSEGV, &g_previous_segv, nullptr);
        return;  // the access faults again, now with the previous handler
    }
    const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
    const uintptr_t fresh_sp = (sp - 512) & ~uintptr_t(15);  // past the red zone
#if defined(__x86_64__)
    const int write = (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;  // page-fault error code
    uc->uc_mcontext.gregs[REG_RSP] = static_cast<greg_t>(fresh_sp - 8);  // as after a call
    uc->uc_mcontext.gregs[REG_RIP] = reinterpret_cast<greg_t>(&kernel_fault);
    uc->uc_mcontext.gregs[REG_RDI] = static_cast<greg_t>(address);
    uc->uc_mcontext.gregs[REG_RSI] = write;
#elif defined(__aarch64__)
    uc->uc_mcontext.sp = fresh_sp;
    uc->uc_mcontext.pc = reinterpret_cast<uintptr_t>(&kernel_fault);
    uc->uc_mcontext.regs[0] = address;
    uc->uc_mcontext.regs[1] = 2;  // read or write: not known here
#else
    (void)address, (void)fresh_sp;
    static const char msg[] = "gputrack emu: invalid memory access in kernel code\n";
    (void)!write(2, msg, sizeof msg - 1);
    sigaction(SIGSEGV, &g_previous_segv, nullptr);
#endif
}

void install_fault_handler() {  // with g_guard_mutex held
    if (g_fault_handler) return;
    struct sigaction action {};
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, &g_previous_segv) == 0) g_fault_handler = true;
}

// ---- the pool of OS threads -------------------------------------------------------------

struct Pool {
    std::mutex mutex;
    std::condition_variable wake, finished_cv;
    Launch* job = nullptr;
    uint64_t generation = 0;
    int wanted = 0, joined = 0, finished = 0;
    int helpers = 0;  // OS threads besides the launching one
    pid_t pid = 0;

    void helper_loop() {
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(mutex);
        for (;;) {
            wake.wait(lock, [&] { return generation != seen; });
            seen = generation;
            if (joined >= wanted) continue;
            ++joined;
            Launch* launch = job;
            lock.unlock();
            this_worker().run_blocks(*launch);
            lock.lock();
            if (++finished == joined) finished_cv.notify_all();
        }
    }
};

int configured_threads() {
    if (const char* env = std::getenv("GPUTRACK_EMU_THREADS")) {
        int n = std::atoi(env);
        if (n >= 1) return n;
    }
    unsigned n = std::thread::hardware_concurrency();
    return n ? int(n) : 1;
}

std::mutex g_launch_mutex;
std::atomic<int> g_reverse_order{0};
Pool* g_pool = nullptr;
thread_local std::string tls_last_error;

Pool& pool() {
    // After fork() the helper threads are gone: start new ones (the old pool is leaked).
    if (!g_pool || g_pool->pid != getpid()) {
        auto* p = new Pool;
        p->pid = getpid();
        p->helpers = configured_threads() - 1;
        for (int i = 0; i < p->helpers; ++i) std::thread([p] { p->helper_loop(); }).detach();
        g_pool = p;
    }
    return *g_pool;
}

}  // namespace

extern "C" {

int gputrack_emu_launch(gputrack_emu_body body, gputrack_emu_block_hook hook,
                        const unsigned grid[3], const unsigned block[3], size_t shared_bytes,
                        void** args) {
    std::lock_guard<std::mutex> serial(g_launch_mutex);
    tls_last_error.clear();
    Launch launch;
    launch.body = body;
    launch.hook = hook;
    for (int i = 0; i < 3; ++i) launch.grid[i] = grid[i], launch.block[i] = block[i];
    launch.shared_bytes = shared_bytes;
    launch.args = args;
    launch.total_blocks = uint64_t(grid[0]) * grid[1] * grid[2];
    launch.reverse = g_reverse_order.load() != 0;
    const uint64_t threads = uint64_t(block[0]) * block[1] * block[2];
    if (threads == 0 || threads > kMaxThreads || launch.total_blocks == 0) {
        tls_last_error = "invalid launch configuration";
        return -1;
    }

    Pool& p = pool();
    {
        std::lock_guard<std::mutex> lock(p.mutex);
        p.job = &launch;
        p.wanted = int(std::min<uint64_t>(uint64_t(p.helpers), launch.total_blocks - 1));
        p.joined = p.finished = 0;
        ++p.generation;
    }
    if (p.wanted > 0) p.wake.notify_all();
    this_worker().run_blocks(launch);
    {
        std::unique_lock<std::mutex> lock(p.mutex);
        p.finished_cv.wait(lock, [&] { return p.finished == p.joined; });
        p.wanted = 0;  // a helper that wakes late must not join a finished launch
        p.job = nullptr;
    }
    if (launch.abort) {
        tls_last_error = launch.error;
        return -1;
    }
    return 0;
}

const char* gputrack_emu_last_error(void) { return tls_last_error.c_str(); }

const char* gputrack_emu_poison_shared(gputrack_emu_tls_layout* layout, const void* anchor,
                                       const gputrack_emu_span* keep, int n_keep) {
    if (tls_layout(layout, anchor) < 0)
        return "emu: cannot find the kernel module's thread-local storage (its shared memory)";
    char* const base = static_cast<char*>(const_cast<void*>(anchor)) - layout->anchor_offset;
    char* p = base + layout->begin;
    char* const end = base + layout->end;
    while (p < end) {  // poison up to the next span to keep, skip it, and so on
        const gputrack_emu_span* next = nullptr;
        for (int i = 0; i < n_keep; ++i) {
            const char* b = static_cast<const char*>(keep[i].begin);
            if (b + keep[i].bytes > p && (!next || b < static_cast<const char*>(next->begin)))
                next = &keep[i];
        }
        if (!next) {
            poison(p, end);
            break;
        }
        char* b = static_cast<char*>(const_cast<void*>(next->begin));
        if (b > p) poison(p, std::min(b, end));
        p = std::max(p, b + next->bytes);
    }
    return nullptr;
}

void* gputrack_emu_guard_alloc(size_t bytes, int before, const char* label) {
    std::lock_guard<std::mutex> lock(g_guard_mutex);
    GuardSlot* slot = nullptr;
    for (GuardSlot& g : g_guards) {
        if (!g.live.load(std::memory_order_relaxed)) {
            slot = &g;
            break;
        }
    }
    if (!slot) return nullptr;
    install_fault_handler();
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t span = (bytes + 15) & ~size_t(15);  // 16-byte aligned start, as vector loads need
    const size_t data_pages = (span + page - 1) / page;
    const size_t map_bytes = (data_pages + 1) * page;
    void* mem = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                     0);
    if (mem == MAP_FAILED) return nullptr;
    char* m = static_cast<char*>(mem);
    char* guard = before ? m : m + data_pages * page;
    if (mprotect(guard, page, PROT_NONE) != 0) {
        munmap(mem, map_bytes);
        return nullptr;
    }
    char* data = before ? m + page : guard - span;
    slot->map = reinterpret_cast<uintptr_t>(m);
    slot->map_bytes = map_bytes;
    slot->data = reinterpret_cast<uintptr_t>(data);
    slot->bytes = bytes;
    std::snprintf(slot->label, sizeof slot->label, "%s", label ? label : "a device array");
    slot->live.store(1, std::memory_order_release);
    return data;
}

void gputrack_emu_guard_free(void* data) {
    std::lock_guard<std::mutex> lock(g_guard_mutex);
    for (GuardSlot& g : g_guards) {
        if (g.live.load(std::memory_order_relaxed) && g.data == reinterpret_cast<uintptr_t>(data)) {
            g.live.store(0, std::memory_order_release);
            munmap(reinterpret_cast<void*>(g.map), g.map_bytes);
            return;
        }
    }
}

int gputrack_emu_worker_count(void) { return configured_threads(); }

void gputrack_emu_set_reverse_order(int reverse) { g_reverse_order.store(reverse != 0); }

const char* gputrack_emu_context_switch(void) { return kSwitchKind; }

int gputrack_emu_barrier(int op, int predicate) {
    return kernel_worker().barrier(op, predicate);
}

unsigned long long gputrack_emu_warp(int op, unsigned mask, unsigned long long value, int param,
                                     int width, const void* site) {
    return kernel_worker().warp_op(op, mask, value, param, width, site);
}

void gputrack_emu_fail(const char* what, const char* file, int line) {
    kernel_worker().fail(what, file, line);
}

}  // extern "C"
