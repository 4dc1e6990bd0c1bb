/*
 * pdl.cuh — programmatic dependent launch (Hopper): every kernel of kernels/cuda is
 * launched so that it may start while the kernel before it in the stream finishes.
 *
 * Why: a decode step is ~480 kernels of 2-12 us. Launched plainly (even from a CUDA
 * graph), each one starts only after the previous one has finished and its writes
 * are flushed, then pays its own ramp (blocks scheduled, the first weight loads in
 * flight from DRAM) before useful work: a few microseconds a kernel that no byte
 * count explains. With the launch attribute, the next kernel's blocks are scheduled
 * as soon as every block of the current one has passed `trigger`, and do what needs
 * no result of earlier kernels (index arithmetic, streaming their weights into L2)
 * before `wait`, which returns once the previous grid has completed and its memory
 * is visible (so, transitively, every earlier grid's).
 *
 * The rule every kernel here follows: before `wait`, read only what no kernel writes
 * (weights, launch arguments) and write nothing; `trigger` comes after `wait`, so at
 * most one further grid is resident ahead of the one running.
 *
 * On for decode steps (HALO_CUDA_PDL, below); without the attribute the instructions
 * are no-ops and every launch is plain. Before sm_90 they do not exist and compile to
 * nothing.
 */
#ifndef HALO_CUDA_PDL_CUH
#define HALO_CUDA_PDL_CUH

#include <cuda_runtime.h>

#include <stdlib.h>
#include <string.h>
#include <utility>

namespace halo_pdl {

/* Wait for the previous grid in the stream (complete, its writes visible). */
__device__ __forceinline__ void wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
/* Let the next grid in the stream be scheduled (once every block of this one has). */
__device__ __forceinline__ void trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
/* The start of a kernel that reads results of earlier kernels right away. */
__device__ __forceinline__ void begin() {
    wait();
    trigger();
}

/* Whether launches carry the attribute: by default on decode-sized ubatches only (the
 * backend's choice, halo_cuda_pdl_set; H100: tg128 295 -> 331 t/s, while on prompts it
 * cost pp512 4760 -> 4249); HALO_CUDA_PDL=1 on every launch, =0 on none. The CUDA tests
 * pass with it on (ops, mv, attn, deltanet, model; H100, 8 Dec). */
extern "C" int halo_cuda_pdl_get(void);
inline bool enabled() {
    static int mode = -1; /* 0 off, 1 every launch, 2 decode; a race reads twice */
    if (mode < 0) {
        const char *v = getenv("HALO_CUDA_PDL");
        mode = v && strcmp(v, "1") == 0 ? 1 : v && strcmp(v, "0") == 0 ? 0 : 2;
    }
    return mode == 1 || (mode == 2 && halo_cuda_pdl_get() != 0);
}

/* kernel<<<grid, block, smem, stream>>>(args...), with the attribute when enabled. */
template <typename... Params, typename... Args>
inline cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, Args &&...args) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = enabled() ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

} /* namespace halo_pdl */

#endif /* HALO_CUDA_PDL_CUH */
