/*
 * The Vulkan device: instance and device selection, memory (allocations addressed by
 * pointers, staging copies), pipelines created at first use, and the command buffer
 * that records launches until halo_vk_sync. See vk_ops.h and vk_impl.h.
 */
#include "kernels/vulkan/vk_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STAGING_BYTES ((VkDeviceSize)16 << 20) /* copies go through it in chunks */
#define ADDR_BASE ((uintptr_t)1 << 44)         /* halo_vk addresses start here */
#define ADDR_GAP ((uintptr_t)1 << 16)          /* between allocations */
#define VALIDATION_LAYER "VK_LAYER_KHRONOS_validation"

const char *halo_vk_result_name(VkResult r) {
    switch (r) {
    case VK_SUCCESS:
        return "VK_SUCCESS";
    case VK_NOT_READY:
        return "VK_NOT_READY";
    case VK_TIMEOUT:
        return "VK_TIMEOUT";
    case VK_INCOMPLETE:
        return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY:
        return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
        return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED:
        return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST:
        return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED:
        return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT:
        return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT:
        return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT:
        return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER:
        return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS:
        return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_OUT_OF_POOL_MEMORY:
        return "VK_ERROR_OUT_OF_POOL_MEMORY";
    case VK_ERROR_INVALID_SHADER_NV:
        return "VK_ERROR_INVALID_SHADER_NV";
    default:
        return "an unknown VkResult";
    }
}

int halo_vk_fail(halo_vk *vk, int status, const char *fmt, ...) {
    if (vk->err.status) return status; /* the first error wins */
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof vk->err.msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return halo_error_set(&vk->err, status, "Vulkan (%s): %s", vk->info.name, msg);
}

/* ---- instance and devices --------------------------------------------------------------- */

static bool has_layer(const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
    VkLayerProperties *p = calloc(n, sizeof *p);
    bool found = false;
    if (p && vkEnumerateInstanceLayerProperties(&n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(p[i].layerName, name) == 0;
    free(p);
    return found;
}

static bool has_device_extension(VkPhysicalDevice pd, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkExtensionProperties *p = calloc(n, sizeof *p);
    bool found = false;
    if (p && vkEnumerateDeviceExtensionProperties(pd, NULL, &n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(p[i].extensionName, name) == 0;
    free(p);
    return found;
}

static VkResult create_instance(bool validation, VkInstance *out) {
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "halo",
        .pEngineName = "halo",
        .apiVersion = VK_API_VERSION_1_2,
    };
    const char *layers[] = {VALIDATION_LAYER};
    const char *exts[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
        .enabledLayerCount = validation ? 1 : 0,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = validation ? 1 : 0,
        .ppEnabledExtensionNames = exts,
    };
    return vkCreateInstance(&ci, NULL, out);
}

static const char *type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
        return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
        return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
        return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
        return "cpu";
    default:
        return "other";
    }
}

/* The first queue family with compute, preferring one without graphics (a dedicated
 * compute queue); UINT32_MAX if none. */
static uint32_t compute_family(VkPhysicalDevice pd) {
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    VkQueueFamilyProperties *q = calloc(n ? n : 1, sizeof *q);
    uint32_t best = UINT32_MAX;
    if (q) {
        vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, q);
        for (uint32_t i = 0; i < n; i++) {
            if (!(q[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
            if (best == UINT32_MAX || !(q[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) best = i;
            if (!(q[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) break;
        }
    }
    free(q);
    return best;
}

/* A memory type allowed by `bits` with all of `need` (and all of `want` if one has them);
 * UINT32_MAX if none. */
static uint32_t find_memory(const VkPhysicalDeviceMemoryProperties *mp, uint32_t bits,
                            VkMemoryPropertyFlags need, VkMemoryPropertyFlags want) {
    uint32_t fallback = UINT32_MAX;
    for (uint32_t i = 0; i < mp->memoryTypeCount; i++) {
        if (!(bits & (1u << i))) continue;
        VkMemoryPropertyFlags f = mp->memoryTypes[i].propertyFlags;
        if ((f & need) != need) continue;
        if ((f & want) == want) return i;
        if (fallback == UINT32_MAX) fallback = i;
    }
    return fallback;
}

static void describe(VkPhysicalDevice pd, halo_vk_device_info *info) {
    memset(info, 0, sizeof *info);
    VkPhysicalDeviceSubgroupProperties sub = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &sub};
    vkGetPhysicalDeviceProperties2(pd, &p2);
    const VkPhysicalDeviceProperties *p = &p2.properties;
    snprintf(info->name, sizeof info->name, "%s", p->deviceName);
    info->type = type_name(p->deviceType);
    info->api_version = p->apiVersion;
    info->subgroup_size = sub.subgroupSize;

    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t h = 0; h < mp.memoryHeapCount; h++)
        if ((mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            mp.memoryHeaps[h].size > info->memory_bytes)
            info->memory_bytes = mp.memoryHeaps[h].size;
    /* UMA: an integrated or CPU device whose device-local memory the host can map (a
     * discrete GPU with resizable BAR has such memory too, but it is not system memory) */
    const VkMemoryPropertyFlags shared = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                         VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                         VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    info->uma = (p->deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ||
                 p->deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) &&
                find_memory(&mp, ~0u, shared, 0) != UINT32_MAX;
    info->cooperative_matrix = has_device_extension(pd, "VK_KHR_cooperative_matrix");
    if (has_device_extension(pd, VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME)) {
        VkPhysicalDeviceExternalMemoryHostPropertiesEXT hp = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT};
        VkPhysicalDeviceProperties2 h2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                          .pNext = &hp};
        vkGetPhysicalDeviceProperties2(pd, &h2);
        const uint64_t a = hp.minImportedHostPointerAlignment;
        info->host_import = a > 0 && (a & (a - 1)) == 0; /* the spec: a power of two */
        info->import_align = info->host_import ? a : 0;
    }
    VkPhysicalDeviceFeatures features;
    vkGetPhysicalDeviceFeatures(pd, &features);
    info->float64 = features.shaderFloat64;

    const VkSubgroupFeatureFlags ops =
        VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    if (p->apiVersion < VK_API_VERSION_1_2)
        snprintf(info->why_not, sizeof info->why_not, "Vulkan %u.%u (1.2 is needed)",
                 VK_API_VERSION_MAJOR(p->apiVersion), VK_API_VERSION_MINOR(p->apiVersion));
    else if (compute_family(pd) == UINT32_MAX)
        snprintf(info->why_not, sizeof info->why_not, "no compute queue");
    else if (!(sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) ||
             (sub.supportedOperations & ops) != ops)
        snprintf(info->why_not, sizeof info->why_not, "no subgroup arithmetic in compute shaders");
    else if (!has_device_extension(pd, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME))
        snprintf(info->why_not, sizeof info->why_not, "no " VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME);
    else if (p->limits.maxPushConstantsSize < HALO_VK_PUSH_BYTES)
        snprintf(info->why_not, sizeof info->why_not, "push constants of %u bytes (%d needed)",
                 p->limits.maxPushConstantsSize, HALO_VK_PUSH_BYTES);
    else
        info->usable = true;
}

int halo_vk_devices(halo_vk_device_info *info, int max, halo_error *err) {
    VkInstance inst;
    VkResult r = create_instance(false, &inst);
    if (r != VK_SUCCESS) {
        halo_error_set(err, HALO_ERR_UNSUPPORTED, "no Vulkan driver (vkCreateInstance: %s)",
                       halo_vk_result_name(r));
        return 0;
    }
    uint32_t n = 0;
    r = vkEnumeratePhysicalDevices(inst, &n, NULL);
    VkPhysicalDevice *pd = n ? calloc(n, sizeof *pd) : NULL;
    if (r == VK_SUCCESS && n && pd) r = vkEnumeratePhysicalDevices(inst, &n, pd);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) n = 0;
    if (n == 0)
        halo_error_set(err, HALO_ERR_UNSUPPORTED, "the Vulkan driver reports no device%s%s",
                       r == VK_SUCCESS ? "" : ": ", r == VK_SUCCESS ? "" : halo_vk_result_name(r));
    for (uint32_t i = 0; i < n && (int)i < max && pd; i++)
        describe(pd[i], &info[i]);
    free(pd);
    vkDestroyInstance(inst, NULL);
    return (int)n;
}

static VKAPI_ATTR VkBool32 VKAPI_CALL on_validation(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                                    VkDebugUtilsMessageTypeFlagsEXT type,
                                                    const VkDebugUtilsMessengerCallbackDataEXT *d,
                                                    void *user) {
    halo_vk *vk = user;
    bool error = sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    if (error) vk->validation_errors++;
    halo_log(error ? HALO_LOG_ERROR : HALO_LOG_WARN, "Vulkan validation: %s",
             d && d->pMessage ? d->pMessage : "(no message)");
    return VK_FALSE;
}

static int make_buffer(halo_vk *vk, VkDeviceSize size, uint32_t mem_type, VkBuffer *buf,
                       VkDeviceMemory *mem, void **map);

halo_vk *halo_vk_open(int device, const halo_vk_options *opt, halo_error *err) {
    halo_vk_device_info info;
    halo_error e = {0};
    int n = halo_vk_devices(NULL, 0, &e);
    if (n <= 0) {
        halo_error_set(err, e.status ? e.status : HALO_ERR_UNSUPPORTED, "%s", e.msg);
        return NULL;
    }
    if (device < 0 || device >= n) {
        halo_error_set(err, HALO_ERR_ARG, "no Vulkan device %d (there %s %d: 0..%d)", device,
                       n == 1 ? "is" : "are", n, n - 1);
        return NULL;
    }
    halo_vk *vk = calloc(1, sizeof *vk);
    if (!vk) {
        halo_error_set(err, HALO_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (opt) vk->opt = *opt;
    vk->next_addr = ADDR_BASE;
    vk->validation = vk->opt.validation && has_layer(VALIDATION_LAYER);
    snprintf(vk->info.name, sizeof vk->info.name, "device %d", device);
    VkResult r = create_instance(vk->validation, &vk->instance);
    if (r != VK_SUCCESS) {
        halo_vk_fail(vk, HALO_ERR_UNSUPPORTED, "vkCreateInstance: %s", halo_vk_result_name(r));
        goto fail;
    }
    if (vk->validation) {
        PFN_vkCreateDebugUtilsMessengerEXT create =
            (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
                vk->instance, "vkCreateDebugUtilsMessengerEXT");
        VkDebugUtilsMessengerCreateInfoEXT mi = {
            .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
            .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                               VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
            .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
            .pfnUserCallback = on_validation,
            .pUserData = vk,
        };
        if (create) create(vk->instance, &mi, NULL, &vk->messenger);
    }
    uint32_t count = (uint32_t)n;
    VkPhysicalDevice *pd = calloc(count, sizeof *pd);
    if (!pd || vkEnumeratePhysicalDevices(vk->instance, &count, pd) != VK_SUCCESS ||
        (uint32_t)device >= count) {
        free(pd);
        halo_vk_fail(vk, HALO_ERR_UNSUPPORTED, "the devices changed while opening");
        goto fail;
    }
    vk->phys = pd[device];
    free(pd);
    describe(vk->phys, &info);
    vk->info = info;
    if (!info.usable) {
        halo_vk_fail(vk, HALO_ERR_UNSUPPORTED, "not usable by halo: %s", info.why_not);
        goto fail;
    }

    /* the device: one compute queue, push descriptors */
    vk->queue_family = compute_family(vk->phys);
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                  .queueFamilyIndex = vk->queue_family,
                                  .queueCount = 1,
                                  .pQueuePriorities = &prio};
    /* push descriptors; host memory import where offered (VK_KHR_external_memory, which
     * it extends, is core in 1.1) */
    const char *exts[] = {VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME,
                          VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME};
    const VkPhysicalDeviceFeatures features = {.shaderFloat64 = info.float64};
    VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                             .queueCreateInfoCount = 1,
                             .pQueueCreateInfos = &qi,
                             .enabledExtensionCount = info.host_import ? 2 : 1,
                             .ppEnabledExtensionNames = exts,
                             .pEnabledFeatures = &features};
    r = vkCreateDevice(vk->phys, &di, NULL, &vk->dev);
    if (r != VK_SUCCESS) {
        halo_vk_fail(vk, HALO_ERR_UNSUPPORTED, "vkCreateDevice: %s", halo_vk_result_name(r));
        goto fail;
    }
    vkGetDeviceQueue(vk->dev, vk->queue_family, 0, &vk->queue);
    vk->push_descriptor =
        (PFN_vkCmdPushDescriptorSetKHR)vkGetDeviceProcAddr(vk->dev, "vkCmdPushDescriptorSetKHR");
    if (!vk->push_descriptor) {
        halo_vk_fail(vk, HALO_ERR_UNSUPPORTED, "vkCmdPushDescriptorSetKHR is missing");
        goto fail;
    }
    if (info.host_import) {
        vk->host_pointer_properties = (PFN_vkGetMemoryHostPointerPropertiesEXT)vkGetDeviceProcAddr(
            vk->dev, "vkGetMemoryHostPointerPropertiesEXT");
        if (!vk->host_pointer_properties) vk->info.host_import = false;
    }

    /* memory: device buffers in device-local memory (mapped where the host sees it: UMA),
     * staging in host-visible coherent memory (cached where offered: faster reads) */
    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &m3};
    vkGetPhysicalDeviceProperties2(vk->phys, &p2);
    vk->max_alloc = m3.maxMemoryAllocationSize;
    if (p2.properties.limits.maxStorageBufferRange < vk->max_alloc)
        vk->max_alloc = p2.properties.limits.maxStorageBufferRange;
    if (vk->max_alloc > UINT32_MAX) vk->max_alloc = UINT32_MAX;
    if (vk->opt.max_alloc_bytes && vk->opt.max_alloc_bytes < vk->max_alloc)
        vk->max_alloc = vk->opt.max_alloc_bytes;
    vk->info.max_buffer_bytes = vk->max_alloc;
    vk->ssbo_align = p2.properties.limits.minStorageBufferOffsetAlignment;
    if (vk->ssbo_align < 4) vk->ssbo_align = 4;
    const char *bar = getenv("HALO_VK_BARRIERS");
    vk->barrier_all = bar && !strcmp(bar, "all");
    const char *mm = getenv("HALO_VK_MM");
    char *mm_end = NULL;
    long mm_tok = mm && *mm ? strtol(mm, &mm_end, 10) : 1;
    if (mm_end && *mm_end) mm_tok = 1; /* not a number: the default */
    vk->mm_min_tok = p2.properties.limits.maxComputeSharedMemorySize < HALO_VK_MM_SHARED ? 0
                     : mm_tok == 1 ? HALO_VK_MM_MIN_TOK
                     : mm_tok > 1 && mm_tok < 1 << 20 ? (uint32_t)mm_tok
                                                      : 0;
    vkGetPhysicalDeviceMemoryProperties(vk->phys, &vk->mem_props);
    const VkMemoryPropertyFlags host =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    if (info.uma)
        vk->mem_type_device =
            find_memory(&vk->mem_props, ~0u, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | host, 0);
    else
        vk->mem_type_device =
            find_memory(&vk->mem_props, ~0u, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
    vk->mem_type_staging =
        find_memory(&vk->mem_props, ~0u, host, VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    if (vk->mem_type_device == UINT32_MAX || vk->mem_type_staging == UINT32_MAX) {
        halo_vk_fail(vk, HALO_ERR_UNSUPPORTED, "no device-local or no host-visible memory");
        goto fail;
    }
    vk->device_mapped =
        (vk->mem_props.memoryTypes[vk->mem_type_device].propertyFlags & host) == host;
    if (make_buffer(vk, STAGING_BYTES, vk->mem_type_staging, &vk->staging, &vk->staging_mem,
                    &vk->staging_map) ||
        make_buffer(vk, 16, vk->mem_type_device, &vk->dummy, &vk->dummy_mem, NULL))
        goto fail;
    vk->staging_size = STAGING_BYTES;

    /* one pipeline layout: HALO_VK_BINDINGS storage buffers by push descriptor, and the
     * push constants */
    VkDescriptorSetLayoutBinding b[HALO_VK_BINDINGS];
    for (int i = 0; i < HALO_VK_BINDINGS; i++)
        b[i] = (VkDescriptorSetLayoutBinding){.binding = (uint32_t)i,
                                              .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                              .descriptorCount = 1,
                                              .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    VkDescriptorSetLayoutCreateInfo li = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .flags = VK_DESCRIPTOR_SET_LAYOUT_CREATE_PUSH_DESCRIPTOR_BIT_KHR,
        .bindingCount = HALO_VK_BINDINGS,
        .pBindings = b};
    VkPushConstantRange pc = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
                              .size = HALO_VK_PUSH_BYTES};
    r = vkCreateDescriptorSetLayout(vk->dev, &li, NULL, &vk->set_layout);
    if (r == VK_SUCCESS) {
        VkPipelineLayoutCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                         .setLayoutCount = 1,
                                         .pSetLayouts = &vk->set_layout,
                                         .pushConstantRangeCount = 1,
                                         .pPushConstantRanges = &pc};
        r = vkCreatePipelineLayout(vk->dev, &pi, NULL, &vk->layout);
    }
    if (r != VK_SUCCESS) {
        halo_vk_fail(vk, HALO_ERR_IO, "creating the pipeline layout: %s", halo_vk_result_name(r));
        goto fail;
    }
    vk->modules = calloc((size_t)halo_vk_n_shaders, sizeof *vk->modules);
    if (!vk->modules) {
        halo_vk_fail(vk, HALO_ERR_NOMEM, "out of memory");
        goto fail;
    }

    /* the command buffer and its fence */
    VkCommandPoolCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                  .flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
                                  .queueFamilyIndex = vk->queue_family};
    r = vkCreateCommandPool(vk->dev, &ci, NULL, &vk->pool);
    if (r == VK_SUCCESS) {
        VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                          .commandPool = vk->pool,
                                          .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                          .commandBufferCount = 1};
        r = vkAllocateCommandBuffers(vk->dev, &ai, &vk->main_cmd);
        vk->cmd = vk->main_cmd;
    }
    if (r == VK_SUCCESS) {
        VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
        r = vkCreateFence(vk->dev, &fi, NULL, &vk->fence);
    }
    if (r != VK_SUCCESS) {
        halo_vk_fail(vk, HALO_ERR_IO, "creating the command buffer: %s", halo_vk_result_name(r));
        goto fail;
    }
    {
        uint32_t nq = 0;
        vkGetPhysicalDeviceQueueFamilyProperties(vk->phys, &nq, NULL);
        VkQueueFamilyProperties *qp = calloc(nq ? nq : 1, sizeof *qp);
        VkPhysicalDeviceProperties pp;
        vkGetPhysicalDeviceProperties(vk->phys, &pp);
        if (qp) {
            vkGetPhysicalDeviceQueueFamilyProperties(vk->phys, &nq, qp);
            if (vk->queue_family < nq)
                halo_vk_profile_open(vk, qp[vk->queue_family].timestampValidBits,
                                     pp.limits.timestampPeriod);
            free(qp);
        }
    }
    halo_log(HALO_LOG_DEBUG, "Vulkan: %s (%s, subgroup %u%s%s)", vk->info.name, vk->info.type,
             vk->info.subgroup_size, vk->info.uma ? ", UMA" : "",
             vk->validation ? ", validation on" : "");
    return vk;
fail:
    halo_error_set(err, vk->err.status ? vk->err.status : HALO_ERR_IO, "%s", vk->err.msg);
    halo_vk_close(vk);
    return NULL;
}

void halo_vk_close(halo_vk *vk) {
    if (!vk) return;
    if (vk->dev) {
        vkDeviceWaitIdle(vk->dev);
        halo_vk_profile_close(vk);
        for (int i = 0; i < vk->n_allocs; i++) {
            vkDestroyBuffer(vk->dev, vk->allocs[i].buf, NULL);
            vkFreeMemory(vk->dev, vk->allocs[i].mem, NULL);
        }
        for (int i = 0; i < vk->n_pipes; i++)
            vkDestroyPipeline(vk->dev, vk->pipes[i].pipe, NULL);
        for (int i = 0; vk->modules && i < halo_vk_n_shaders; i++)
            if (vk->modules[i]) vkDestroyShaderModule(vk->dev, vk->modules[i], NULL);
        if (vk->layout) vkDestroyPipelineLayout(vk->dev, vk->layout, NULL);
        if (vk->set_layout) vkDestroyDescriptorSetLayout(vk->dev, vk->set_layout, NULL);
        if (vk->fence) vkDestroyFence(vk->dev, vk->fence, NULL);
        if (vk->pool) vkDestroyCommandPool(vk->dev, vk->pool, NULL);
        if (vk->rec_pool) vkDestroyCommandPool(vk->dev, vk->rec_pool, NULL);
        free(vk->rec);
        if (vk->staging) vkDestroyBuffer(vk->dev, vk->staging, NULL);
        if (vk->staging_mem) vkFreeMemory(vk->dev, vk->staging_mem, NULL);
        if (vk->dummy) vkDestroyBuffer(vk->dev, vk->dummy, NULL);
        if (vk->dummy_mem) vkFreeMemory(vk->dev, vk->dummy_mem, NULL);
        vkDestroyDevice(vk->dev, NULL);
    }
    if (vk->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy =
            (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
                vk->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy) destroy(vk->instance, vk->messenger, NULL);
    }
    if (vk->instance) vkDestroyInstance(vk->instance, NULL);
    free(vk->allocs);
    free(vk->pipes);
    free(vk->modules);
    free(vk);
}

const halo_vk_device_info *halo_vk_info(const halo_vk *vk) {
    return &vk->info;
}
const halo_error *halo_vk_error(const halo_vk *vk) {
    return &vk->err;
}
int halo_vk_validation_errors(const halo_vk *vk) {
    return vk->validation_errors;
}
bool halo_vk_validation_enabled(const halo_vk *vk) {
    return vk->validation;
}

/* ---- memory ----------------------------------------------------------------------------- */

static int make_buffer(halo_vk *vk, VkDeviceSize size, uint32_t mem_type, VkBuffer *buf,
                       VkDeviceMemory *mem, void **map) {
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = size,
                             .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkResult r = vkCreateBuffer(vk->dev, &bi, NULL, buf);
    if (r != VK_SUCCESS)
        return halo_vk_fail(vk, HALO_ERR_NOMEM, "vkCreateBuffer of %llu bytes: %s",
                            (unsigned long long)size, halo_vk_result_name(r));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk->dev, *buf, &req);
    if (!(req.memoryTypeBits & (1u << mem_type))) {
        vkDestroyBuffer(vk->dev, *buf, NULL);
        *buf = VK_NULL_HANDLE;
        return halo_vk_fail(vk, HALO_ERR_UNSUPPORTED, "buffers cannot use memory type %u",
                            mem_type);
    }
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                               .allocationSize = req.size,
                               .memoryTypeIndex = mem_type};
    r = vkAllocateMemory(vk->dev, &ai, NULL, mem);
    if (r == VK_SUCCESS) r = vkBindBufferMemory(vk->dev, *buf, *mem, 0);
    if (r == VK_SUCCESS && map) {
        *map = NULL;
        VkMemoryPropertyFlags f = vk->mem_props.memoryTypes[mem_type].propertyFlags;
        if (f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
            r = vkMapMemory(vk->dev, *mem, 0, VK_WHOLE_SIZE, 0, map);
    }
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(vk->dev, *buf, NULL);
        if (*mem) vkFreeMemory(vk->dev, *mem, NULL);
        *buf = VK_NULL_HANDLE;
        *mem = VK_NULL_HANDLE;
        return halo_vk_fail(vk, HALO_ERR_NOMEM, "allocating %llu bytes of device memory: %s",
                            (unsigned long long)size, halo_vk_result_name(r));
    }
    return HALO_OK;
}

vk_alloc *halo_vk_find(halo_vk *vk, const void *p) {
    uintptr_t a = (uintptr_t)p;
    int lo = 0, hi = vk->n_allocs - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        vk_alloc *m = &vk->allocs[mid];
        if (a < m->addr)
            hi = mid - 1;
        else if (a >= m->addr + m->size)
            lo = mid + 1;
        else
            return m;
    }
    return NULL;
}

vk_alloc *halo_vk_range(halo_vk *vk, const void *p, size_t bytes, const char *what,
                        VkDeviceSize *offset) {
    vk_alloc *a = halo_vk_find(vk, p);
    if (!a) {
        halo_vk_fail(vk, HALO_ERR_ARG, "%s: %p is not Vulkan device memory", what, p);
        return NULL;
    }
    *offset = (uintptr_t)p - a->addr;
    if (bytes > a->size - *offset) {
        halo_vk_fail(vk, HALO_ERR_ARG, "%s: %zu bytes at offset %llu overrun an allocation of %llu",
                     what, bytes, (unsigned long long)*offset, (unsigned long long)a->size);
        return NULL;
    }
    return a;
}

/* Room for one more allocation record; false (vk->err set) when out of memory. */
static bool grow_allocs(halo_vk *vk) {
    if (vk->n_allocs < vk->cap_allocs) return true;
    int cap = vk->cap_allocs ? 2 * vk->cap_allocs : 64;
    vk_alloc *g = realloc(vk->allocs, (size_t)cap * sizeof *g);
    if (!g) {
        halo_vk_fail(vk, HALO_ERR_NOMEM, "out of memory");
        return false;
    }
    vk->allocs = g;
    vk->cap_allocs = cap;
    return true;
}

/* The next range of halo_vk addresses, for an allocation of `bytes`. */
static uintptr_t take_addresses(halo_vk *vk, VkDeviceSize bytes) {
    uintptr_t a = vk->next_addr;
    vk->next_addr += (((uintptr_t)bytes + ADDR_GAP - 1) & ~(ADDR_GAP - 1)) + ADDR_GAP;
    return a;
}

/* A zeroed allocation of `bytes`: device memory, or (host) the staging type's host-visible
 * memory, which must be mapped. */
static void *new_alloc(halo_vk *vk, size_t bytes, bool host) {
    if (bytes == 0 || bytes > vk->max_alloc) {
        halo_vk_fail(vk, HALO_ERR_ARG, "cannot allocate %zu bytes%s (1 to %llu)", bytes,
                     host ? " of host memory" : "", (unsigned long long)vk->max_alloc);
        return NULL;
    }
    if (!grow_allocs(vk)) return NULL;
    /* sizes rounded to 4 bytes: shaders read words */
    VkDeviceSize size = ((VkDeviceSize)bytes + 3) & ~(VkDeviceSize)3;
    vk_alloc a = {.size = size, .host = host};
    if (make_buffer(vk, size, host ? vk->mem_type_staging : vk->mem_type_device, &a.buf, &a.mem,
                    &a.map))
        return NULL;
    if (host && !a.map) {
        vkDestroyBuffer(vk->dev, a.buf, NULL);
        vkFreeMemory(vk->dev, a.mem, NULL);
        halo_vk_fail(vk, HALO_ERR_IO, "host memory of %zu bytes is not mapped", bytes);
        return NULL;
    }
    a.addr = take_addresses(vk, bytes);
    vk->allocs[vk->n_allocs++] = a;
    vk->allocated_bytes += size;
    void *p = (void *)a.addr;
    if (a.map)
        memset(a.map, 0, (size_t)size);
    else if (halo_vk_zero(vk, p, size) || halo_vk_sync(vk)) {
        halo_vk_free(vk, p);
        return NULL;
    }
    return p;
}

void *halo_vk_alloc(halo_vk *vk, size_t bytes) {
    return new_alloc(vk, bytes, false);
}

void *halo_vk_alloc_host(halo_vk *vk, size_t bytes) {
    return new_alloc(vk, bytes, true);
}

void *halo_vk_host_pointer(halo_vk *vk, const void *p) {
    vk_alloc *a = halo_vk_find(vk, p);
    if (!a || !a->map || a->imported || (vk->opt.force_staging && !a->host)) return NULL;
    return (char *)a->map + ((uintptr_t)p - a->addr);
}

void *halo_vk_import(halo_vk *vk, const void *host, size_t bytes, char *why, size_t why_size) {
    char dummy[8];
    if (!why || !why_size) why = dummy, why_size = sizeof dummy;
    why[0] = '\0';
    if (vk->err.status) {
        snprintf(why, why_size, "the device failed earlier: %s", vk->err.msg);
        return NULL;
    }
    if (!vk->info.host_import || !vk->host_pointer_properties) {
        snprintf(why, why_size, "the device has no " VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME);
        return NULL;
    }
    if (!host || bytes == 0) {
        snprintf(why, why_size, "nothing to import");
        return NULL;
    }
    if (vk->opt.refuse_imports_after > 0 && vk->n_imports >= vk->opt.refuse_imports_after) {
        snprintf(why, why_size, "refused by the test option refuse_imports_after = %d",
                 vk->opt.refuse_imports_after);
        return NULL;
    }
    const uintptr_t align = (uintptr_t)vk->info.import_align;
    const uintptr_t start = (uintptr_t)host & ~(align - 1);
    if ((uintptr_t)host + bytes < (uintptr_t)host ||
        (uintptr_t)host + bytes > UINTPTR_MAX - align) {
        snprintf(why, why_size, "the range wraps the address space");
        return NULL;
    }
    const uintptr_t end = ((uintptr_t)host + bytes + align - 1) & ~(align - 1);
    const VkDeviceSize size = end - start;
    if (size > vk->max_alloc) {
        snprintf(why, why_size,
                 "%llu bytes (whole blocks of %llu) exceed the device's largest allocation, "
                 "%llu bytes",
                 (unsigned long long)size, (unsigned long long)align,
                 (unsigned long long)vk->max_alloc);
        return NULL;
    }
    const VkExternalMemoryHandleTypeFlagBits handle =
        VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
    VkMemoryHostPointerPropertiesEXT hp = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT};
    VkResult r = vk->host_pointer_properties(vk->dev, handle, (const void *)start, &hp);
    if (r != VK_SUCCESS || hp.memoryTypeBits == 0) {
        snprintf(why, why_size, "vkGetMemoryHostPointerPropertiesEXT: %s",
                 r != VK_SUCCESS ? halo_vk_result_name(r) : "no memory type can hold it");
        return NULL;
    }
    if (!grow_allocs(vk)) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    VkExternalMemoryBufferCreateInfo eb = {
        .sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO, .handleTypes = handle};
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .pNext = &eb,
                             .size = size,
                             .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    vk_alloc a = {.size = size, .imported = true, .lead = (uintptr_t)host - start};
    r = vkCreateBuffer(vk->dev, &bi, NULL, &a.buf);
    if (r != VK_SUCCESS) {
        snprintf(why, why_size, "vkCreateBuffer of %llu bytes: %s", (unsigned long long)size,
                 halo_vk_result_name(r));
        return NULL;
    }
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk->dev, a.buf, &req);
    /* a memory type both allow, device-local where one is (on a UMA device all are) */
    const uint32_t bits = req.memoryTypeBits & hp.memoryTypeBits;
    uint32_t type = find_memory(&vk->mem_props, bits, 0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (type == UINT32_MAX || req.size > size) {
        vkDestroyBuffer(vk->dev, a.buf, NULL);
        if (type == UINT32_MAX)
            snprintf(why, why_size, "no memory type both a buffer and the host pointer allow");
        else
            snprintf(why, why_size, "a buffer of %llu bytes needs %llu", (unsigned long long)size,
                     (unsigned long long)req.size);
        return NULL;
    }
    VkImportMemoryHostPointerInfoEXT imp = {
        .sType = VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT,
        .handleType = handle,
        .pHostPointer = (void *)start};
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                               .pNext = &imp,
                               .allocationSize = size,
                               .memoryTypeIndex = type};
    r = vkAllocateMemory(vk->dev, &ai, NULL, &a.mem);
    if (r == VK_SUCCESS) {
        r = vkBindBufferMemory(vk->dev, a.buf, a.mem, 0);
        if (r != VK_SUCCESS) vkFreeMemory(vk->dev, a.mem, NULL);
    }
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(vk->dev, a.buf, NULL);
        snprintf(why, why_size, "importing %llu bytes of host memory at %p: %s",
                 (unsigned long long)size, (void *)start, halo_vk_result_name(r));
        return NULL;
    }
    a.map = (void *)start; /* downloads read the host's bytes */
    a.addr = take_addresses(vk, size);
    vk->allocs[vk->n_allocs++] = a;
    vk->imported_bytes += size;
    vk->n_imports++;
    return (void *)(a.addr + a.lead);
}

void halo_vk_memory_use(const halo_vk *vk, uint64_t *allocated, uint64_t *imported) {
    if (allocated) *allocated = vk->allocated_bytes;
    if (imported) *imported = vk->imported_bytes;
}

void halo_vk_free(halo_vk *vk, void *p) {
    if (!p) return;
    vk_alloc *a = halo_vk_find(vk, p);
    if (!a || a->addr + a->lead != (uintptr_t)p) {
        halo_vk_fail(vk, HALO_ERR_ARG, "free of %p: not an allocation", p);
        return;
    }
    halo_vk_sync(vk); /* the recorded work may use it */
    vk->free_gen++;   /* and kept recordings may bind it */
    vkDestroyBuffer(vk->dev, a->buf, NULL);
    vkFreeMemory(vk->dev, a->mem, NULL);
    if (a->imported)
        vk->imported_bytes -= a->size;
    else
        vk->allocated_bytes -= a->size;
    int i = (int)(a - vk->allocs);
    memmove(a, a + 1, (size_t)(vk->n_allocs - i - 1) * sizeof *a);
    vk->n_allocs--;
}

/* ---- recording and submitting ----------------------------------------------------------- */

/* Wait for the work halo_vk_submit left running, then free its command buffer for the
 * next recording. Waits even after an error (what it uses may be freed next). */
static int wait_in_flight(halo_vk *vk) {
    if (!vk->in_flight) return vk->err.status;
    vk->in_flight = false;
    VkResult r = vkWaitForFences(vk->dev, 1, &vk->fence, VK_TRUE, UINT64_MAX);
    if (r != VK_SUCCESS)
        return halo_vk_fail(vk, HALO_ERR_IO, "waiting for the GPU: %s", halo_vk_result_name(r));
    vkResetFences(vk->dev, 1, &vk->fence);
    halo_vk_profile_collect(vk);
    if (vk->rec_dead) { /* a broken recording's part, run */
        vkFreeCommandBuffers(vk->dev, vk->rec_pool, 1, &vk->rec_dead);
        vk->rec_dead = VK_NULL_HANDLE;
    }
    r = vkResetCommandPool(vk->dev, vk->pool, 0);
    if (r != VK_SUCCESS)
        return halo_vk_fail(vk, HALO_ERR_IO, "vkResetCommandPool: %s", halo_vk_result_name(r));
    return vk->err.status;
}

static int begin(halo_vk *vk) {
    if (vk->err.status) return vk->err.status;
    if (vk->recording) return HALO_OK;
    int rc = wait_in_flight(vk); /* one command buffer: the submitted work ends first */
    if (rc) return rc;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    vk->cmd = vk->main_cmd;
    VkResult r = vkBeginCommandBuffer(vk->cmd, &bi);
    if (r != VK_SUCCESS)
        return halo_vk_fail(vk, HALO_ERR_IO, "vkBeginCommandBuffer: %s", halo_vk_result_name(r));
    vk->recording = true;
    vk->n_recorded = 0;
    vk->n_touched = 0; /* the commands before ended with a barrier (end_commands) */
    halo_vk_profile_start(vk);
    return HALO_OK;
}

/* Make the writes of the commands so far (dispatches and transfers) visible to the next
 * ones, which start after them. */
static void barrier(halo_vk *vk) {
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
    const VkPipelineStageFlags stages =
        VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    vkCmdPipelineBarrier(vk->cmd, stages, stages, 0, 1, &mb, 0, NULL, 0, NULL);
    vk->n_touched = 0;
    vk->n_barriers++;
}

static bool conflict(const vk_touch *a, const vk_touch *b) {
    return a->buf == b->buf && a->lo < b->hi && b->lo < a->hi && (a->write || b->write);
}

/* Before a command that touches t[0 .. n): a barrier where it depends on a command since
 * the last one (or the list of ranges is full, or HALO_VK_BARRIERS=all); then its ranges
 * join the list. */
static void order_after(halo_vk *vk, const vk_touch *t, int n) {
    bool need = vk->n_touched + n > HALO_VK_TOUCHES;
    for (int i = 0; i < n && !need; i++)
        for (int j = 0; j < vk->n_touched && !need; j++)
            need = conflict(&t[i], &vk->touched[j]);
    if (need) barrier(vk);
    for (int i = 0; i < n && vk->n_touched < HALO_VK_TOUCHES; i++)
        vk->touched[vk->n_touched++] = t[i];
}

/* A command was recorded (after its order_after): `name` its shader (or "copy", "fill",
 * "upload", "download"), type its first specialization constant (UINT32_MAX: none). */
static void recorded(halo_vk *vk, const char *name, uint32_t type) {
    vk->n_recorded++;
    vk->n_commands++;
    if (vk->barrier_all) barrier(vk);
    halo_vk_profile_after(vk, name, type);
}

void halo_vk_barrier_stats(const halo_vk *vk, uint64_t *commands, uint64_t *barriers) {
    if (commands) *commands = vk->n_commands;
    if (barriers) *barriers = vk->n_barriers;
}

/* End the command buffer being recorded, after a barrier that makes its writes visible
 * to the host (downloads from mapped memory). */
static VkResult end_commands(halo_vk *vk) {
    /* ... and to the commands of the next submission (a replay, the next step) */
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask =
                              VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_SHADER_READ_BIT |
                                           VK_ACCESS_SHADER_WRITE_BIT |
                                           VK_ACCESS_TRANSFER_READ_BIT |
                                           VK_ACCESS_TRANSFER_WRITE_BIT};
    const VkPipelineStageFlags work =
        VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    vkCmdPipelineBarrier(vk->cmd, work, work | VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0,
                         NULL);
    vk->n_touched = 0;
    return vkEndCommandBuffer(vk->cmd);
}

/* A kept recording interrupted by a submit: what it holds runs now (it is submitted as
 * main_cmd would be) and is freed after its fence; the rest of the work is recorded into
 * main_cmd, and halo_vk_record_end keeps nothing. */
static void break_recording(halo_vk *vk, bool submitted) {
    struct halo_vk_recording *rec = vk->rec;
    if (!rec || rec->broken) return;
    rec->broken = true;
    if (submitted)
        vk->rec_dead = rec->cmd;
    else
        vkFreeCommandBuffers(vk->dev, vk->rec_pool, 1, &rec->cmd);
    rec->cmd = VK_NULL_HANDLE;
    vk->cmd = vk->main_cmd;
}

int halo_vk_submit(halo_vk *vk) {
    if (vk->err.status) return vk->err.status;
    if (!vk->recording) return HALO_OK; /* nothing new: idle, or already submitted */
    vk->recording = false;
    const bool kept = vk->rec && !vk->rec->broken && vk->cmd == vk->rec->cmd;
    VkResult r = end_commands(vk);
    if (r != VK_SUCCESS) {
        if (kept) break_recording(vk, false);
        return halo_vk_fail(vk, HALO_ERR_IO, "vkEndCommandBuffer: %s", halo_vk_result_name(r));
    }
    if (kept && vk->n_recorded == 0) break_recording(vk, false);
    if (vk->n_recorded) {
        /* host writes to mapped memory before the submit are visible to it (the
         * submit is a host-write barrier); its writes are made visible to the host */
        VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                           .commandBufferCount = 1,
                           .pCommandBuffers = &vk->cmd};
        r = vkQueueSubmit(vk->queue, 1, &si, vk->fence);
        halo_vk_profile_submitted(vk, r == VK_SUCCESS);
        if (kept) break_recording(vk, r == VK_SUCCESS);
        if (r != VK_SUCCESS)
            return halo_vk_fail(vk, HALO_ERR_IO, "vkQueueSubmit: %s", halo_vk_result_name(r));
        vk->in_flight = true; /* the fence and the pool's reset wait for wait_in_flight */
        return HALO_OK;
    }
    halo_vk_profile_submitted(vk, false);
    r = vkResetCommandPool(vk->dev, vk->pool, 0);
    if (r != VK_SUCCESS)
        return halo_vk_fail(vk, HALO_ERR_IO, "vkResetCommandPool: %s", halo_vk_result_name(r));
    return HALO_OK;
}

int halo_vk_sync(halo_vk *vk) {
    const int rc = halo_vk_submit(vk);
    const int rw = wait_in_flight(vk);
    return rc ? rc : rw;
}

/* ---- kept recordings -------------------------------------------------------------------- */

int halo_vk_record_begin(halo_vk *vk) {
    if (vk->err.status) return vk->err.status;
    if (vk->rec) return halo_vk_fail(vk, HALO_ERR_ARG, "record_begin: a recording is open");
    int rc = halo_vk_sync(vk); /* the work so far runs on its own */
    if (rc) return rc;
    if (!vk->rec_pool) {
        VkCommandPoolCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                      .queueFamilyIndex = vk->queue_family};
        VkResult r = vkCreateCommandPool(vk->dev, &ci, NULL, &vk->rec_pool);
        if (r != VK_SUCCESS)
            return halo_vk_fail(vk, HALO_ERR_IO, "record_begin: vkCreateCommandPool: %s",
                                halo_vk_result_name(r));
    }
    struct halo_vk_recording *rec = calloc(1, sizeof *rec);
    if (!rec) return halo_vk_fail(vk, HALO_ERR_NOMEM, "out of memory");
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = vk->rec_pool,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = 1};
    VkResult r = vkAllocateCommandBuffers(vk->dev, &ai, &rec->cmd);
    if (r == VK_SUCCESS) {
        /* no ONE_TIME_SUBMIT: it is submitted again and again (never twice at once) */
        VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
        r = vkBeginCommandBuffer(rec->cmd, &bi);
        if (r != VK_SUCCESS) vkFreeCommandBuffers(vk->dev, vk->rec_pool, 1, &rec->cmd);
    }
    if (r != VK_SUCCESS) {
        free(rec);
        return halo_vk_fail(vk, HALO_ERR_IO, "record_begin: %s", halo_vk_result_name(r));
    }
    vk->rec = rec;
    vk->cmd = rec->cmd;
    vk->recording = true;
    vk->n_recorded = 0;
    vk->n_touched = 0;
    return HALO_OK;
}

int halo_vk_record_end(halo_vk *vk, halo_vk_recording **out) {
    *out = NULL;
    struct halo_vk_recording *rec = vk->rec;
    if (!rec) return halo_vk_fail(vk, HALO_ERR_ARG, "record_end: no recording is open");
    vk->rec = NULL;
    if (rec->broken) { /* ran part-way; the rest is in main_cmd, submitted by the next sync */
        free(rec);
        return vk->err.status;
    }
    VkResult r = end_commands(vk); /* vk->cmd is rec->cmd */
    vk->recording = false;
    vk->cmd = vk->main_cmd;
    if (r != VK_SUCCESS || vk->err.status) {
        vkFreeCommandBuffers(vk->dev, vk->rec_pool, 1, &rec->cmd);
        free(rec);
        if (r != VK_SUCCESS)
            return halo_vk_fail(vk, HALO_ERR_IO, "record_end: vkEndCommandBuffer: %s",
                                halo_vk_result_name(r));
        return vk->err.status;
    }
    rec->free_gen = vk->free_gen;
    rec->n_commands = vk->n_recorded;
    vk->n_kept++;
    *out = rec;
    return HALO_OK;
}

bool halo_vk_recording_valid(const halo_vk *vk, const halo_vk_recording *rec) {
    return rec && !rec->broken && rec->free_gen == vk->free_gen;
}

int halo_vk_recording_commands(const halo_vk_recording *rec) {
    return rec ? rec->n_commands : 0;
}

int halo_vk_replay(halo_vk *vk, halo_vk_recording *rec) {
    if (vk->err.status) return vk->err.status;
    if (vk->rec) return halo_vk_fail(vk, HALO_ERR_ARG, "replay: a recording is open");
    if (!halo_vk_recording_valid(vk, rec))
        return halo_vk_fail(vk, HALO_ERR_ARG,
                            "replay: the recording is stale (an allocation was freed since)");
    int rc = halo_vk_sync(vk); /* the work recorded before it, then its turn */
    if (rc || rec->n_commands == 0) return rc;
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &rec->cmd};
    VkResult r = vkQueueSubmit(vk->queue, 1, &si, vk->fence);
    if (r != VK_SUCCESS)
        return halo_vk_fail(vk, HALO_ERR_IO, "replay: vkQueueSubmit: %s", halo_vk_result_name(r));
    vk->in_flight = true;
    vk->n_replays++;
    return HALO_OK;
}

void halo_vk_recording_stats(const halo_vk *vk, uint64_t *kept, uint64_t *replays) {
    if (kept) *kept = vk->n_kept;
    if (replays) *replays = vk->n_replays;
}

void halo_vk_recording_free(halo_vk *vk, halo_vk_recording *rec) {
    if (!rec) return;
    if (rec->cmd) {
        wait_in_flight(vk); /* it may be the work in flight */
        vkFreeCommandBuffers(vk->dev, vk->rec_pool, 1, &rec->cmd);
    }
    free(rec);
}

/* Mapped (coherent) memory: the host's writes before a submit are visible to its
 * commands (a submit orders them), and the commands' writes are visible to the host
 * after the fence, through the host barrier halo_vk_sync records last. */

/* Imported host memory is the model file's (read-only): writes into it are refused. */
static int writable(halo_vk *vk, const vk_alloc *a, const char *what) {
    if (!a->imported) return HALO_OK;
    return halo_vk_fail(vk, HALO_ERR_ARG, "%s: the destination is imported host memory (read-only)",
                        what);
}

int halo_vk_upload(halo_vk *vk, void *dst, const void *src, size_t bytes) {
    VkDeviceSize off;
    vk_alloc *a = halo_vk_range(vk, dst, bytes, "upload", &off);
    if (!a || writable(vk, a, "upload")) return vk->err.status;
    if (bytes == 0) return HALO_OK;
    int rc = halo_vk_sync(vk); /* the work so far may read or write dst */
    if (rc) return rc;
    if (a->map && !vk->opt.force_staging) {
        memcpy((char *)a->map + off, src, bytes);
        return HALO_OK;
    }
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < vk->staging_size ? bytes - done : (size_t)vk->staging_size;
        memcpy(vk->staging_map, (const char *)src + done, n);
        if ((rc = begin(vk))) return rc;
        VkBufferCopy c = {.srcOffset = 0, .dstOffset = off + done, .size = n};
        vkCmdCopyBuffer(vk->cmd, vk->staging, a->buf, 1, &c);
        recorded(vk, "upload", UINT32_MAX); /* then a sync */
        if ((rc = halo_vk_sync(vk))) return rc;
        done += n;
    }
    return HALO_OK;
}

int halo_vk_download(halo_vk *vk, void *dst, const void *src, size_t bytes) {
    VkDeviceSize off;
    vk_alloc *a = halo_vk_range(vk, src, bytes, "download", &off);
    if (!a) return vk->err.status;
    if (bytes == 0) return HALO_OK;
    int rc = halo_vk_sync(vk);
    if (rc) return rc;
    if (a->map && !vk->opt.force_staging) {
        memcpy(dst, (const char *)a->map + off, bytes);
        return HALO_OK;
    }
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < vk->staging_size ? bytes - done : (size_t)vk->staging_size;
        if ((rc = begin(vk))) return rc;
        VkBufferCopy c = {.srcOffset = off + done, .dstOffset = 0, .size = n};
        vkCmdCopyBuffer(vk->cmd, a->buf, vk->staging, 1, &c);
        recorded(vk, "download", UINT32_MAX); /* then a sync */
        if ((rc = halo_vk_sync(vk))) return rc;
        memcpy((char *)dst + done, vk->staging_map, n);
        done += n;
    }
    return HALO_OK;
}

int halo_vk_copy(halo_vk *vk, void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return HALO_OK;
    VkDeviceSize doff, soff;
    vk_alloc *d = halo_vk_range(vk, dst, bytes, "copy (destination)", &doff);
    if (d && writable(vk, d, "copy")) return vk->err.status;
    vk_alloc *s = d ? halo_vk_range(vk, src, bytes, "copy (source)", &soff) : NULL;
    if (!s) return vk->err.status;
    int rc = begin(vk);
    if (rc) return rc;
    const vk_touch t[2] = {{s->buf, soff, soff + bytes, false}, {d->buf, doff, doff + bytes, true}};
    order_after(vk, t, 2);
    VkBufferCopy c = {.srcOffset = soff, .dstOffset = doff, .size = bytes};
    vkCmdCopyBuffer(vk->cmd, s->buf, d->buf, 1, &c);
    recorded(vk, "copy", UINT32_MAX);
    return HALO_OK;
}

int halo_vk_zero(halo_vk *vk, void *dst, size_t bytes) {
    if (bytes == 0) return HALO_OK;
    VkDeviceSize off;
    vk_alloc *a = halo_vk_range(vk, dst, bytes, "zero", &off);
    if (!a || writable(vk, a, "zero")) return vk->err.status;
    if ((off | bytes) & 3)
        return halo_vk_fail(vk, HALO_ERR_ARG,
                            "zero: offset %llu and size %zu must be multiples of 4",
                            (unsigned long long)off, bytes);
    int rc = begin(vk);
    if (rc) return rc;
    const vk_touch t = {a->buf, off, off + bytes, true};
    order_after(vk, &t, 1);
    vkCmdFillBuffer(vk->cmd, a->buf, off, bytes, 0);
    recorded(vk, "fill", UINT32_MAX);
    return HALO_OK;
}

/* ---- pipelines and dispatches ----------------------------------------------------------- */

static const halo_vk_spirv *find_shader(const char *name, int *index) {
    for (int i = 0; i < halo_vk_n_shaders; i++)
        if (strcmp(halo_vk_shaders[i].name, name) == 0) {
            *index = i;
            return &halo_vk_shaders[i];
        }
    return NULL;
}

static VkPipeline get_pipeline(halo_vk *vk, const char *name, const uint32_t *spec, int n_spec) {
    int index = -1;
    const halo_vk_spirv *sh = find_shader(name, &index);
    if (!sh) {
        halo_vk_fail(vk, HALO_ERR_UNSUPPORTED, "no shader named %s was built", name);
        return VK_NULL_HANDLE;
    }
    for (int i = 0; i < vk->n_pipes; i++) {
        vk_pipeline *p = &vk->pipes[i];
        if (p->spirv == sh && p->n_spec == n_spec &&
            (n_spec == 0 || memcmp(p->spec, spec, sizeof *spec * (size_t)n_spec) == 0))
            return p->pipe;
    }
    VkResult r = VK_SUCCESS;
    if (!vk->modules[index]) {
        VkShaderModuleCreateInfo mi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                       .codeSize = sh->n_words * 4,
                                       .pCode = sh->words};
        r = vkCreateShaderModule(vk->dev, &mi, NULL, &vk->modules[index]);
        if (r != VK_SUCCESS) {
            halo_vk_fail(vk, HALO_ERR_IO, "shader %s: vkCreateShaderModule: %s", name,
                         halo_vk_result_name(r));
            return VK_NULL_HANDLE;
        }
    }
    if (vk->n_pipes == vk->cap_pipes) {
        int cap = vk->cap_pipes ? 2 * vk->cap_pipes : 32;
        vk_pipeline *g = realloc(vk->pipes, (size_t)cap * sizeof *g);
        if (!g) {
            halo_vk_fail(vk, HALO_ERR_NOMEM, "out of memory");
            return VK_NULL_HANDLE;
        }
        vk->pipes = g;
        vk->cap_pipes = cap;
    }
    VkSpecializationMapEntry entries[HALO_VK_MAX_SPEC];
    for (int i = 0; i < n_spec; i++)
        entries[i] = (VkSpecializationMapEntry){
            .constantID = (uint32_t)i, .offset = (uint32_t)(4 * i), .size = 4};
    VkSpecializationInfo si = {.mapEntryCount = (uint32_t)n_spec,
                               .pMapEntries = entries,
                               .dataSize = 4 * (size_t)n_spec,
                               .pData = spec};
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = vk->modules[index],
                  .pName = "main",
                  .pSpecializationInfo = n_spec ? &si : NULL},
        .layout = vk->layout,
    };
    vk_pipeline *p = &vk->pipes[vk->n_pipes];
    r = vkCreateComputePipelines(vk->dev, VK_NULL_HANDLE, 1, &ci, NULL, &p->pipe);
    if (r != VK_SUCCESS) {
        halo_vk_fail(vk, HALO_ERR_IO, "shader %s: vkCreateComputePipelines: %s", name,
                     halo_vk_result_name(r));
        return VK_NULL_HANDLE;
    }
    p->spirv = sh;
    p->n_spec = n_spec;
    memset(p->spec, 0, sizeof p->spec);
    if (n_spec) memcpy(p->spec, spec, sizeof *spec * (size_t)n_spec);
    vk->n_pipes++;
    return p->pipe;
}

int halo_vk_dispatch(halo_vk *vk, const char *name, const uint32_t *spec, int n_spec,
                     const vk_arg *args, int n_args, const void *params, size_t params_bytes,
                     uint32_t gx, uint32_t gy, uint32_t gz) {
    if (vk->err.status) return vk->err.status;
    if (n_args > HALO_VK_BINDINGS || n_spec > HALO_VK_MAX_SPEC ||
        params_bytes > HALO_VK_PUSH_BYTES - 4 * HALO_VK_BINDINGS)
        return halo_vk_fail(vk, HALO_ERR_ARG, "shader %s: too many arguments", name);
    if (gx == 0 || gy == 0 || gz == 0) return HALO_OK;
    uint32_t push[HALO_VK_PUSH_BYTES / 4] = {0};
    VkDescriptorBufferInfo bi[HALO_VK_BINDINGS];
    VkWriteDescriptorSet w[HALO_VK_BINDINGS];
    vk_touch t[HALO_VK_BINDINGS];
    int n_t = 0;
    for (int i = 0; i < HALO_VK_BINDINGS; i++) {
        VkBuffer buf = vk->dummy;
        VkDeviceSize base = 0, range = VK_WHOLE_SIZE;
        if (i < n_args && args[i].p) {
            VkDeviceSize off;
            vk_alloc *a = halo_vk_range(vk, args[i].p, args[i].bytes, name, &off);
            if (!a) return vk->err.status;
            buf = a->buf;
            /* only the range the shader may touch is bound (so a barrier can be left out
             * between launches on disjoint ranges of a buffer, and the validation layer's
             * synchronization checks see the same ranges): from the offset rounded down to
             * the device's alignment, to the last word of the range */
            base = off & ~(vk->ssbo_align - 1);
            range = (off - base + (VkDeviceSize)args[i].bytes + 3) & ~(VkDeviceSize)3;
            if (range == 0) range = 4;
            if (range > a->size - base) range = a->size - base;
            push[i] = (uint32_t)(off - base);
            t[n_t++] = (vk_touch){buf, off, off + (args[i].bytes ? args[i].bytes : 1),
                                  args[i].access != VK_R};
        }
        bi[i] = (VkDescriptorBufferInfo){.buffer = buf, .offset = base, .range = range};
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                      .dstBinding = (uint32_t)i,
                                      .descriptorCount = 1,
                                      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                      .pBufferInfo = &bi[i]};
    }
    if (params_bytes) memcpy(push + HALO_VK_BINDINGS, params, params_bytes);
    VkPipeline pipe = get_pipeline(vk, name, spec, n_spec);
    if (!pipe) return vk->err.status;
    int rc = begin(vk);
    if (rc) return rc;
    order_after(vk, t, n_t);
    vkCmdBindPipeline(vk->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    vk->push_descriptor(vk->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vk->layout, 0, HALO_VK_BINDINGS,
                        w);
    vkCmdPushConstants(vk->cmd, vk->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, HALO_VK_PUSH_BYTES,
                       push);
    vkCmdDispatch(vk->cmd, gx, gy, gz);
    recorded(vk, name, n_spec ? spec[0] : UINT32_MAX);
    return HALO_OK;
}
