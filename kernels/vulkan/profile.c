/*
 * HALO_VK_PROFILE=1: where a device's time goes, per shader, from the GPU's own clock.
 * Every command of a submitted command buffer gets a timestamp after it (a query pool of
 * PROFILE_QUERIES, reset at the buffer's start, read after its fence), with a barrier after
 * every command (so the commands run one at a time and the time between two timestamps is
 * the second command's) and the backend's recorded steps off (each step is recorded, so its
 * commands are known by name). Per label (the shader, with the weight type of a product or
 * embedding: "mul_mv_k q4_K"), calls and total time are summed, and printed on stderr when
 * the device closes. What it costs: the barriers and timestamps themselves, so the total
 * is a little above a run without it; the shares are what to read.
 */
#include "kernels/vulkan/vk_impl.h"
#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROFILE_QUERIES 16384
#define PROFILE_LABELS 160

struct vk_profile {
    VkQueryPool pool;
    double ns_per_tick;
    uint64_t valid_mask;
    int n_queries;      /* written into the command buffer being recorded (0: none) */
    int pending;        /* written into the one submitted, to read after its fence */
    int16_t *label_of;  /* [PROFILE_QUERIES]: the label of the command before query i */
    uint64_t *ticks;    /* [PROFILE_QUERIES] */
    struct {
        char name[48];
        uint64_t calls;
        double ns;
    } labels[PROFILE_LABELS];
    int n_labels;
    uint64_t dropped; /* commands past PROFILE_QUERIES in one command buffer */
};

static bool product(const char *name) {
    return !strncmp(name, "mul_m", 5) || !strncmp(name, "get_rows", 8);
}

void halo_vk_profile_open(halo_vk *vk, uint32_t timestamp_bits, float period) {
    const char *env = getenv("HALO_VK_PROFILE");
    if (!env || !*env || !strcmp(env, "0")) return;
    if (timestamp_bits == 0 || period <= 0) {
        halo_log(HALO_LOG_WARN, "HALO_VK_PROFILE: %s has no timestamps on its compute queue",
                 vk->info.name);
        return;
    }
    struct vk_profile *p = calloc(1, sizeof *p);
    if (!p) return;
    p->label_of = calloc(PROFILE_QUERIES, sizeof *p->label_of);
    p->ticks = calloc(PROFILE_QUERIES, sizeof *p->ticks);
    VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                .queryCount = PROFILE_QUERIES};
    if (!p->label_of || !p->ticks ||
        vkCreateQueryPool(vk->dev, &qi, NULL, &p->pool) != VK_SUCCESS) {
        free(p->label_of), free(p->ticks), free(p);
        halo_log(HALO_LOG_WARN, "HALO_VK_PROFILE: no query pool: profile off");
        return;
    }
    p->ns_per_tick = period;
    p->valid_mask = timestamp_bits >= 64 ? UINT64_MAX : (UINT64_C(1) << timestamp_bits) - 1;
    vk->profile = p;
    vk->barrier_all = true; /* one command at a time: the time between stamps is its own */
    halo_log(HALO_LOG_INFO, "Vulkan profile on (HALO_VK_PROFILE): a barrier and a timestamp "
             "after every command; the table when the device closes");
}

bool halo_vk_profiling(const halo_vk *vk) {
    return vk->profile != NULL;
}

/* At the start of a main command buffer: the queries reset, a first stamp. */
void halo_vk_profile_start(halo_vk *vk) {
    struct vk_profile *p = vk->profile;
    if (!p || vk->rec) return;
    vkCmdResetQueryPool(vk->cmd, p->pool, 0, PROFILE_QUERIES);
    vkCmdWriteTimestamp(vk->cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, p->pool, 0);
    p->n_queries = 1;
}

static int16_t label_id(struct vk_profile *p, const char *name, uint32_t type) {
    char l[48];
    if (product(name) && type < HALO_TYPE_COUNT)
        snprintf(l, sizeof l, "%s %s", name, halo_type_name((int)type));
    else
        snprintf(l, sizeof l, "%s", name);
    for (int i = 0; i < p->n_labels; i++)
        if (!strcmp(p->labels[i].name, l)) return (int16_t)i;
    if (p->n_labels == PROFILE_LABELS) return -1;
    snprintf(p->labels[p->n_labels].name, sizeof p->labels[0].name, "%s", l);
    return (int16_t)p->n_labels++;
}

/* After a command (and its barrier): a stamp, the command's label remembered. */
void halo_vk_profile_after(halo_vk *vk, const char *name, uint32_t type) {
    struct vk_profile *p = vk->profile;
    if (!p || vk->rec || p->n_queries == 0) return;
    if (p->n_queries == PROFILE_QUERIES) {
        p->dropped++;
        return;
    }
    p->label_of[p->n_queries] = label_id(p, name, type);
    vkCmdWriteTimestamp(vk->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, p->pool,
                        (uint32_t)p->n_queries);
    p->n_queries++;
}

/* The command buffer was submitted (ran: its stamps are read after its fence) or dropped. */
void halo_vk_profile_submitted(halo_vk *vk, bool ran) {
    struct vk_profile *p = vk->profile;
    if (!p || vk->rec) return;
    p->pending = ran ? p->n_queries : 0;
    p->n_queries = 0;
}

/* After the fence: each command's time, the difference of its stamp and the one before. */
void halo_vk_profile_collect(halo_vk *vk) {
    struct vk_profile *p = vk->profile;
    if (!p || p->pending < 2) {
        if (p) p->pending = 0;
        return;
    }
    const int n = p->pending;
    p->pending = 0;
    if (vkGetQueryPoolResults(vk->dev, p->pool, 0, (uint32_t)n, sizeof(uint64_t) * (size_t)n,
                              p->ticks, sizeof(uint64_t),
                              VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) != VK_SUCCESS)
        return;
    for (int i = 1; i < n; i++) {
        const int16_t l = p->label_of[i];
        if (l < 0) continue;
        const uint64_t d = (p->ticks[i] - p->ticks[i - 1]) & p->valid_mask;
        p->labels[l].calls++;
        p->labels[l].ns += (double)d * p->ns_per_tick;
    }
}

static int by_time(const void *a, const void *b) {
    const double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The table, on stderr, and the pool released. */
void halo_vk_profile_close(halo_vk *vk) {
    struct vk_profile *p = vk->profile;
    if (!p) return;
    double total = 0;
    for (int i = 0; i < p->n_labels; i++) total += p->labels[i].ns;
    /* sort (time, index) pairs by time */
    double (*order)[2] = calloc((size_t)(p->n_labels ? p->n_labels : 1), sizeof *order);
    if (order && total > 0) {
        for (int i = 0; i < p->n_labels; i++)
            order[i][0] = p->labels[i].ns, order[i][1] = i;
        qsort(order, (size_t)p->n_labels, sizeof *order, by_time);
        fprintf(stderr, "\nVulkan profile (HALO_VK_PROFILE), %s: %.3f ms of commands\n",
                vk->info.name, total / 1e6);
        fprintf(stderr, "| %-28s | %9s | %11s | %7s | %9s |\n", "command", "calls", "total ms",
                "share", "mean us");
        fprintf(stderr, "| %.28s | %.9s | %.11s | %.7s | %.9s |\n",
                "----------------------------", "---------", "-----------", "-------",
                "---------");
        for (int j = 0; j < p->n_labels; j++) {
            const int i = (int)order[j][1];
            fprintf(stderr, "| %-28s | %9llu | %11.3f | %6.1f%% | %9.2f |\n", p->labels[i].name,
                    (unsigned long long)p->labels[i].calls, p->labels[i].ns / 1e6,
                    100.0 * p->labels[i].ns / total,
                    p->labels[i].calls ? p->labels[i].ns / 1e3 / (double)p->labels[i].calls : 0.0);
        }
        if (p->dropped)
            fprintf(stderr, "(%llu commands past %d in one submission not timed)\n",
                    (unsigned long long)p->dropped, PROFILE_QUERIES);
    }
    free(order);
    vkDestroyQueryPool(vk->dev, p->pool, NULL);
    free(p->label_of), free(p->ticks), free(p);
    vk->profile = NULL;
}
