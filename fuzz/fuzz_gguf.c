/*
 * libFuzzer target for the GGUF reader: parse the input as a GGUF image in
 * memory, then touch everything a caller could — every key and value (arrays of
 * arrays and strings included), every tensor's info and first and last data
 * byte, lookups by name, the typed getters — so that anything the reader accepts
 * but got wrong shows up as an ASan/UBSan report.
 *
 *   cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DHALO_FUZZ=ON -DHALO_SANITIZE=ON
 *   cmake --build build-fuzz --target fuzz_gguf
 *   ./build-fuzz/fuzz_gguf -rss_limit_mb=2048 -max_total_time=120 fuzz/seeds/fuzz_gguf
 * Seeds are tiny valid files written by fuzz/gen_seeds.c.
 */
#include "format/gguf.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static volatile uint64_t sink;

static void touch_array(const halo_gguf_array *a, int depth) {
    sink += a->n + (uint64_t)a->type + (uint64_t)depth;
    size_t esz = halo_gguf_type_size(a->type);
    if (esz) {
        for (uint64_t i = 0; i < a->n; i++) {
            int64_t v;
            double d;
            if (halo_gguf_arr_i64(a, i, &v)) sink += (uint64_t)v;
            if (halo_gguf_arr_f64(a, i, &d)) sink += d == d;
        }
        return;
    }
    for (uint64_t i = 0; i < a->n; i++) {
        if (a->type == HALO_GGUF_STRING) {
            const halo_gguf_string *s = &((const halo_gguf_string *)a->data)[i];
            sink += s->len ? (uint8_t)s->data[s->len - 1] : 0;
            sink += (uint8_t)s->data[s->len]; /* the NUL terminator */
        } else {
            touch_array(&((const halo_gguf_array *)a->data)[i], depth + 1);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    halo_gguf *g = NULL;
    halo_error err = {0};
    if (halo_gguf_open_memory(data, size, &g, &err) != 0) {
        if (!err.msg[0] || err.status == 0) __builtin_trap(); /* every failure explains itself */
        return 0;
    }
    sink += halo_gguf_version(g) + halo_gguf_alignment(g) + halo_gguf_n_splits(g);
    for (int64_t i = 0; i < halo_gguf_n_kv(g); i++) {
        const halo_gguf_kv *kv = halo_gguf_kv_at(g, i);
        if (halo_gguf_get(g, kv->key) != &kv->value) __builtin_trap();
        uint64_t u;
        int64_t s;
        uint32_t u32;
        float f;
        bool b;
        sink += halo_gguf_get_u64(g, kv->key, &u) + halo_gguf_get_i64(g, kv->key, &s) +
                halo_gguf_get_u32(g, kv->key, &u32) + halo_gguf_get_f32(g, kv->key, &f) +
                halo_gguf_get_bool(g, kv->key, &b);
        const char *str = halo_gguf_get_str(g, kv->key);
        if (str) sink += strlen(str);
        const halo_gguf_array *a = halo_gguf_get_arr(g, kv->key);
        if (a) touch_array(a, 1);
        sink += strlen(halo_gguf_type_name(kv->value.type));
    }
    for (int64_t i = 0; i < halo_gguf_n_tensors(g); i++) {
        const halo_gguf_tensor *t = halo_gguf_tensor_at(g, i);
        if (halo_gguf_find_tensor(g, t->name) != t) __builtin_trap();
        if (t->n_dims > HALO_GGUF_MAX_DIMS || t->n_elements < 0) __builtin_trap();
        sink += (uint64_t)t->ne[0] + t->offset + (uint64_t)t->type;
        if (t->nbytes) {
            const uint8_t *p = t->data;
            sink += p[0] + p[t->nbytes - 1];
            if ((const uint8_t *)t->data < data || p + t->nbytes > data + size) __builtin_trap();
        }
    }
    halo_gguf_load_stats st;
    halo_gguf_get_load_stats(g, &st);
    sink += st.data_bytes;
    halo_gguf_close(g);
    return 0;
}
