/*
 * Shared by the Vulkan tests: skip (exit 77, with the reason) where the Vulkan backend
 * was not built or no usable device is present; otherwise open one (HALO_VK_DEVICE,
 * else the first usable device), with the validation layer where it is installed.
 * In CI the device is Mesa's CPU driver, lavapipe (mesa-vulkan-drivers), with the
 * validation layer (vulkan-validationlayers): every test fails on a validation error.
 * dev_from and to_host move a test's arrays to and from the device, CHECKing each step.
 */
#ifndef HALO_VULKAN_TEST_H
#define HALO_VULKAN_TEST_H

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef HALO_HAVE_VULKAN
#include "kernels/vulkan/vk_ops.h"

/* The validation layer's synchronization checks leak at exit (its own C++ objects, seen by
 * LeakSanitizer in the sanitizer stage): on in the release stage only. */
#if defined(__SANITIZE_ADDRESS__)
#define VK_TEST_SYNC_CHECKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VK_TEST_SYNC_CHECKS 0
#endif
#endif
#ifndef VK_TEST_SYNC_CHECKS
#define VK_TEST_SYNC_CHECKS 1
#endif

/* The device index the tests use; exits 77 when there is none. The validation layer
 * (where installed) also checks synchronization: a launch reading or writing what an
 * earlier one wrote with no barrier between (the backend leaves barriers out where the
 * ranges are disjoint) is an error (VK_LAYER_ENABLES, unless set already; not under
 * AddressSanitizer, above). */
static inline int vk_test_device(void) {
    if (VK_TEST_SYNC_CHECKS)
        setenv("VK_LAYER_ENABLES", "VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT",
               0);
    halo_error err = {0};
    halo_vk_device_info info[16];
    int n = halo_vk_devices(info, 16, &err);
    if (n <= 0) {
        printf("skipped: no Vulkan device (%s)\n", err.msg);
        exit(77);
    }
    const char *env = getenv("HALO_VK_DEVICE");
    int pick = env ? atoi(env) : -1;
    for (int i = 0; i < n && i < 16; i++) {
        printf("Vulkan device %d: %s (%s, %.1f GiB, subgroup %u%s%s)%s%s\n", i, info[i].name,
               info[i].type, (double)info[i].memory_bytes / (1u << 30), info[i].subgroup_size,
               info[i].uma ? ", UMA" : "", info[i].cooperative_matrix ? ", cooperative matrix" : "",
               info[i].usable ? "" : ": not usable, ", info[i].usable ? "" : info[i].why_not);
        if (pick < 0 && info[i].usable) pick = i;
    }
    if (pick < 0 || pick >= n || (pick < 16 && !info[pick].usable)) {
        printf("skipped: no usable Vulkan device\n");
        exit(77);
    }
    return pick;
}

static inline halo_vk *vk_test_open(int device, bool force_staging) {
    halo_error err = {0};
    halo_vk_options opt = {.validation = true, .force_staging = force_staging};
    halo_vk *vk = halo_vk_open(device, &opt, &err);
    if (!vk) {
        printf("FAILED: opening Vulkan device %d: %s\n", device, err.msg);
        exit(1);
    }
    return vk;
}

/* Every test ends its device's use with no validation error (the count is 0 without the
 * layer). */
static inline void vk_test_check_validation(halo_vk *vk) {
    CHECK_MSG(halo_vk_validation_errors(vk) == 0, "%d validation errors",
              halo_vk_validation_errors(vk));
}

/* New device memory of `bytes` holding h's bytes (h NULL: left as allocated). */
static inline void *dev_from(halo_vk *vk, const void *h, size_t bytes) {
    void *d = halo_vk_alloc(vk, bytes);
    CHECK_MSG(d != NULL, "%s", halo_vk_error(vk)->msg);
    if (d && h) CHECK(halo_vk_upload(vk, d, h, bytes) == HALO_OK);
    return d;
}
/* Copies `bytes` of d to h (none: nothing to check). */
static inline void to_host(halo_vk *vk, void *h, const void *d, size_t bytes) {
    if (bytes == 0) return;
    CHECK_MSG(halo_vk_download(vk, h, d, bytes) == HALO_OK, "%s", halo_vk_error(vk)->msg);
}
#else
static inline int vk_test_device(void) {
    printf("skipped: halo was built without the Vulkan backend (no Vulkan loader, headers or "
           "glslc found)\n");
    exit(77);
}
#endif

#endif
