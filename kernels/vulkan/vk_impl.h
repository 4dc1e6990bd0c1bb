/*
 * kernels/vulkan internals: the device state behind halo_vk, shared by device.c (the
 * instance, memory, pipelines, command recording) and ops.c (the launchers).
 *
 * A launch is one compute dispatch of a shader with up to HALO_VK_BINDINGS storage
 * buffers, bound by push descriptors (no descriptor pool to size or reset). Every
 * shader's push constants start with the byte offsets of its bindings' pointers in
 * their buffers (uint off[HALO_VK_BINDINGS]), followed by its own parameters; see
 * shaders/common.glsl.
 */
#ifndef HALO_VK_IMPL_H
#define HALO_VK_IMPL_H

#include "kernels/vulkan/vk_ops.h"

#include "util/util.h"

#include <stdint.h>
#include <vulkan/vulkan.h>

/* a * b * c bytes, SIZE_MAX on overflow or a negative count (then no allocation holds it) */
static inline size_t bytes3(int64_t a, int64_t b, int64_t c) {
    uint64_t ab, abc;
    if (a < 0 || b < 0 || c < 0 || halo_mul_overflow((uint64_t)a, (uint64_t)b, &ab) ||
        halo_mul_overflow(ab, (uint64_t)c, &abc) || abc > SIZE_MAX)
        return SIZE_MAX;
    return (size_t)abc;
}

static inline bool fits_u32(int64_t v) {
    return v >= 0 && v <= (int64_t)UINT32_MAX;
}

#define HALO_VK_BINDINGS 8
#define HALO_VK_PUSH_BYTES 128 /* the push-constant size every device offers */
#define HALO_VK_MAX_SPEC 4
/* the shared memory of the tiled products (shaders/mul_mm.glsl: two 64 x 64 f32 tiles) */
#define HALO_VK_MM_SHARED 32768
/* products of this many tokens or more take it by default (vulkan_matmul_bench) */
#define HALO_VK_MM_MIN_TOK 16

/* An embedded SPIR-V module (the generated vk_shaders.c, from shaders/<name>.comp). */
typedef struct halo_vk_spirv {
    const char *name;
    const uint32_t *words;
    size_t n_words;
} halo_vk_spirv;
extern const halo_vk_spirv halo_vk_shaders[];
extern const int halo_vk_n_shaders;

/* One allocation: its buffer, memory, and its range of halo_vk addresses. */
typedef struct vk_alloc {
    uintptr_t addr;
    VkDeviceSize size;
    VkBuffer buf;
    VkDeviceMemory mem;
    void *map; /* host mapping where the memory is host-visible, else NULL */
    /* imported host memory (halo_vk_import): read-only for the device's users; map is
     * the host range, and the address handed out is addr + lead */
    bool imported;
    VkDeviceSize lead;
    bool host; /* halo_vk_alloc_host: staging memory, always written through map */
} vk_alloc;

typedef struct vk_pipeline {
    const halo_vk_spirv *spirv;
    uint32_t spec[HALO_VK_MAX_SPEC];
    int n_spec;
    VkPipeline pipe;
} vk_pipeline;

/* A range of a buffer a command reads or writes, since the last barrier. */
typedef struct vk_touch {
    VkBuffer buf;
    VkDeviceSize lo, hi;
    bool write;
} vk_touch;
#define HALO_VK_TOUCHES 64

/* A kept recording (halo_vk_record_begin). */
struct halo_vk_recording {
    VkCommandBuffer cmd; /* NULL once broken */
    uint64_t free_gen;   /* vk->free_gen when it was recorded */
    int n_commands;
    bool broken;
};

struct halo_vk {
    halo_vk_device_info info;
    halo_vk_options opt;
    halo_error err;
    bool validation;
    int validation_errors;

    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    VkPhysicalDeviceMemoryProperties mem_props;
    VkDeviceSize max_alloc;                     /* the largest allocation halo_vk_alloc accepts */
    uint32_t mem_type_device, mem_type_staging; /* memory type indices */
    bool device_mapped; /* mem_type_device is host-visible (UMA): allocations are mapped */
    PFN_vkCmdPushDescriptorSetKHR push_descriptor;
    /* products of mm_min_tok tokens or more take the tiled kernel (shaders/mul_mm.glsl),
     * 0 never: where the device has its shared memory, HALO_VK_MM unset or "1" for the
     * default (ops.c MM_MIN_TOK), "0" never (the matrix-vector path, to compare), n > 1
     * from n tokens (to measure) */
    uint32_t mm_min_tok;
    /* the assignments grouped by expert of the tiled products by id (ops.c), grown on use */
    int32_t *mm_groups;
    size_t mm_groups_bytes;
    /* the parts of split attention (ops.c, shaders/attn_combine.comp), grown on use */
    float *attn_parts;
    size_t attn_parts_bytes;
    PFN_vkGetMemoryHostPointerPropertiesEXT host_pointer_properties; /* NULL: no import */
    int n_imports; /* halo_vk_import calls that succeeded */
    uint64_t allocated_bytes, imported_bytes;                        /* live, halo_vk_memory_use */

    /* allocations, sorted by address (new ones take higher addresses) */
    vk_alloc *allocs;
    int n_allocs, cap_allocs;
    uintptr_t next_addr;
    VkBuffer dummy; /* bound where a launch has no buffer (an optional weight) */
    VkDeviceMemory dummy_mem;

    /* the staging buffer of host <-> device copies (host-visible, mapped) */
    VkBuffer staging;
    VkDeviceMemory staging_mem;
    void *staging_map;
    VkDeviceSize staging_size;

    /* pipelines: one layout for all (push descriptors + push constants) */
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout layout;
    VkShaderModule *modules; /* per embedded shader, created at first use */
    vk_pipeline *pipes;
    int n_pipes, cap_pipes;

    /* the command buffer being recorded: main_cmd (one-time, reset with its pool after
     * each submit), or a kept recording's (halo_vk_record_begin) */
    VkCommandPool pool;
    VkCommandBuffer cmd, main_cmd;
    VkFence fence;
    bool recording;
    bool in_flight; /* submitted (halo_vk_submit), not yet waited for */
    int n_recorded; /* commands since the last submit */
    /* kept recordings: their pool (created at first use), the one being recorded, a
     * broken one's buffer that was submitted part-way (freed after its fence), and the
     * count of frees (a recording made before a free may bind a destroyed buffer) */
    VkCommandPool rec_pool;
    halo_vk_recording *rec;
    VkCommandBuffer rec_dead;
    uint64_t free_gen;
    uint64_t n_kept, n_replays; /* recordings kept, replays submitted */
    /* barriers only where a command depends on one since the last (a read of what it
     * wrote, a write of what it read or wrote): the ranges touched since, and
     * HALO_VK_BARRIERS=all (a barrier after every command, to compare) */
    vk_touch touched[HALO_VK_TOUCHES];
    int n_touched;
    bool barrier_all;
    uint64_t n_barriers, n_commands; /* recorded so far (halo_vk_barrier_stats) */
    VkDeviceSize ssbo_align; /* minStorageBufferOffsetAlignment */
    struct vk_profile *profile; /* HALO_VK_PROFILE (profile.c); NULL: off */
};

/* HALO_VK_PROFILE (kernels/vulkan/profile.c): time per command from the GPU's timestamps. */
void halo_vk_profile_open(halo_vk *vk, uint32_t timestamp_bits, float period);
void halo_vk_profile_start(halo_vk *vk);                                 /* a buffer begins */
void halo_vk_profile_after(halo_vk *vk, const char *name, uint32_t type); /* a command */
void halo_vk_profile_submitted(halo_vk *vk, bool ran);
void halo_vk_profile_collect(halo_vk *vk); /* after the fence */
void halo_vk_profile_close(halo_vk *vk);   /* prints the table */

/* Set vk->err (first error wins) and return status. */
int halo_vk_fail(halo_vk *vk, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *halo_vk_result_name(VkResult r);

/* The allocation holding p (p inside [addr, addr + size)); NULL if none. */
vk_alloc *halo_vk_find(halo_vk *vk, const void *p);
/* The allocation holding [p, p + bytes), with the byte offset of p; NULL (and
 * vk->err set, naming `what`) when p is not device memory or the range overruns it. */
vk_alloc *halo_vk_range(halo_vk *vk, const void *p, size_t bytes, const char *what,
                        VkDeviceSize *offset);

/* One buffer of a launch: the pointer (NULL: the dummy buffer, offset 0), the bytes the
 * shader may touch from it (checked against the allocation; only they are bound), and
 * what it does there: VK_RW (0, the default: reads and writes), VK_R (reads only), VK_W
 * (writes only). A launch waits for an earlier one (a barrier) only where their ranges
 * overlap and one of them writes. */
typedef struct vk_arg {
    const void *p;
    size_t bytes;
    uint8_t access;
} vk_arg;
#define VK_RW 0
#define VK_R 1
#define VK_W 2

/* Record a dispatch of shader `name` specialized by spec[n_spec] (constant_id 0, 1, ...):
 * args[n_args] at bindings 0.., their offsets written to the first words of the push
 * constants, then `params` (params_bytes) after them; groups gx x gy x gz. A barrier
 * follows, so the next command sees its writes. */
int halo_vk_dispatch(halo_vk *vk, const char *name, const uint32_t *spec, int n_spec,
                     const vk_arg *args, int n_args, const void *params, size_t params_bytes,
                     uint32_t gx, uint32_t gy, uint32_t gz);

#endif /* HALO_VK_IMPL_H */
