/*
 * Writes the seed corpus of fuzz_gguf (fuzz/seeds/fuzz_gguf/) with halo's own
 * writer: tiny valid files covering every metadata type, nested and string
 * arrays, several tensor types and shapes, a non-default alignment, a file with
 * no tensors, split keys, and a version-2 file. Not built by CMake (it is not a
 * fuzz_*.c target); regenerate with:
 *   cc -Iinclude -I. fuzz/gen_seeds.c build-format/libhalo_core.a -lm -lpthread -o /tmp/gen_seeds
 *   /tmp/gen_seeds fuzz/seeds/fuzz_gguf
 */
#include "format/gguf.h"
#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static halo_error err;

static void must(int rc) {
    if (rc) {
        fprintf(stderr, "gen_seeds: %s\n", err.msg);
        exit(1);
    }
}

static void data(halo_gguf_writer *w, size_t n) {
    uint8_t buf[512];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 37 + 11);
    while (n) {
        size_t k = n < sizeof buf ? n : sizeof buf;
        must(halo_gguf_writer_write_data(w, buf, k, &err));
        n -= k;
    }
}

static halo_gguf_writer *open_seed(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    halo_gguf_writer *w;
    must(halo_gguf_writer_open(path, &w, &err));
    return w;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "fuzz/seeds/fuzz_gguf";
    halo_gguf_writer *w;

    /* 1: every value type, arrays, nested arrays, three tensor types */
    w = open_seed(dir, "all-types.gguf");
    halo_gguf_value v;
    memset(&v, 0, sizeof v);
    for (int t = 0; t < HALO_GGUF_TYPE_COUNT; t++) {
        if (!halo_gguf_type_size((halo_gguf_type)t)) continue;
        char key[32];
        snprintf(key, sizeof key, "s.%s", halo_gguf_type_name((halo_gguf_type)t));
        v.type = (halo_gguf_type)t;
        v.u64 = t == HALO_GGUF_BOOL ? 1 : 0x40u + (unsigned)t;
        must(halo_gguf_writer_set(w, key, &v, &err));
        uint8_t arr[16] = {1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1};
        snprintf(key, sizeof key, "a.%s", halo_gguf_type_name((halo_gguf_type)t));
        must(halo_gguf_writer_set_arr(w, key, (halo_gguf_type)t, arr,
                                      16 / halo_gguf_type_size((halo_gguf_type)t), &err));
    }
    must(halo_gguf_writer_set_str(w, "general.architecture", "llama", &err));
    const char *toks[] = {"<s>", "</s>", "a", "bc", ""};
    must(halo_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", toks, 5, &err));
    int32_t ints[3] = {11, 11, 10};
    halo_gguf_string xs[2] = {{1, "x"}, {2, "yz"}};
    halo_gguf_array inner[1] = {{.type = HALO_GGUF_STRING, .n = 2, .data = xs}};
    halo_gguf_array lvl[3] = {{.type = HALO_GGUF_INT32, .n = 3, .data = ints},
                              {.type = HALO_GGUF_UINT8, .n = 0, .data = NULL},
                              {.type = HALO_GGUF_ARRAY, .n = 1, .data = inner}};
    v.type = HALO_GGUF_ARRAY;
    v.arr.type = HALO_GGUF_ARRAY;
    v.arr.n = 3;
    v.arr.data = lvl;
    must(halo_gguf_writer_set(w, "a.nested", &v, &err));
    int64_t ne1[2] = {8, 2}, ne2[1] = {32}, ne3[4] = {2, 1, 2, 1};
    must(halo_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", HALO_TYPE_F16, 2, ne1, &err));
    must(halo_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", HALO_TYPE_Q8_0, 1, ne2, &err));
    must(halo_gguf_writer_add_tensor(w, "norm", HALO_TYPE_F32, 4, ne3, &err));
    data(w, 32 + 34 + 16);
    must(halo_gguf_writer_close(w, &err));

    /* 2: vocabulary only, no tensors */
    w = open_seed(dir, "vocab.gguf");
    must(halo_gguf_writer_set_str(w, "general.architecture", "qwen3", &err));
    must(halo_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", &err));
    const char *merges[] = {"a b", "ab c", "Ġ t"};
    must(halo_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", toks, 5, &err));
    must(halo_gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", merges, 3, &err));
    int32_t types[5] = {3, 3, 1, 1, 1};
    must(halo_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", HALO_GGUF_INT32, types, 5, &err));
    must(halo_gguf_writer_close(w, &err));

    /* 3: alignment 64, quantized tensors, an empty tensor */
    w = open_seed(dir, "align64.gguf");
    must(halo_gguf_writer_set_u32(w, "general.alignment", 64, &err));
    int64_t k256[2] = {256, 1}, zero[2] = {0, 3}, iq[1] = {32};
    must(halo_gguf_writer_add_tensor(w, "q4k", HALO_TYPE_Q4_K, 2, k256, &err));
    must(halo_gguf_writer_add_tensor(w, "empty", HALO_TYPE_F32, 2, zero, &err));
    must(halo_gguf_writer_add_tensor(w, "iq4nl", HALO_TYPE_IQ4_NL, 1, iq, &err));
    data(w, halo_type_row_size(HALO_TYPE_Q4_K, 256) + halo_type_row_size(HALO_TYPE_IQ4_NL, 32));
    must(halo_gguf_writer_close(w, &err));

    /* 4: a split part */
    w = open_seed(dir, "split-part.gguf");
    v.type = HALO_GGUF_UINT16;
    v.u16 = 0;
    must(halo_gguf_writer_set(w, "split.no", &v, &err));
    v.u16 = 2;
    must(halo_gguf_writer_set(w, "split.count", &v, &err));
    must(halo_gguf_writer_set_i32(w, "split.tensors.count", 2, &err));
    int64_t ne4[1] = {4};
    must(halo_gguf_writer_add_tensor(w, "output.weight", HALO_TYPE_BF16, 1, ne4, &err));
    data(w, 8);
    must(halo_gguf_writer_close(w, &err));

    /* 5: version 2 (same layout): patch the version of a small file */
    w = open_seed(dir, "v2.gguf");
    must(halo_gguf_writer_set_u32(w, "llama.block_count", 1, &err));
    must(halo_gguf_writer_add_tensor(w, "t", HALO_TYPE_I32, 1, ne4, &err));
    data(w, 16);
    must(halo_gguf_writer_close(w, &err));
    char path[4096];
    snprintf(path, sizeof path, "%s/v2.gguf", dir);
    FILE *f = fopen(path, "r+b");
    if (!f || fseek(f, 4, SEEK_SET) != 0 || fputc(2, f) == EOF || fclose(f) != 0) return 1;
    return 0;
}
