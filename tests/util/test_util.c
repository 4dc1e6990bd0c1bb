/* util: human-readable sizes, size parsing, overflow checks, error messages. */
#include "harness.h"
#include "util/util.h"

#include <stdint.h>

static void check_format(void) {
    char b[32];
    CHECK(!strcmp(halo_format_bytes(0, b, sizeof b), "0 B"));
    CHECK(!strcmp(halo_format_bytes(1023, b, sizeof b), "1023 B"));
    CHECK(!strcmp(halo_format_bytes(1024, b, sizeof b), "1.00 KiB"));
    CHECK(!strcmp(halo_format_bytes(20480, b, sizeof b), "20.0 KiB"));
    CHECK(!strcmp(halo_format_bytes(5ull << 30, b, sizeof b), "5.00 GiB"));
    CHECK(!strcmp(halo_format_bytes(UINT64_MAX, b, sizeof b), "16.0 EiB") ||
          strstr(b, "PiB") != NULL);
    CHECK(!strcmp(halo_format_bytes_si(22000000000ull, b, sizeof b), "22.0 GB"));
    CHECK(!strcmp(halo_format_bytes_si(41399744, b, sizeof b), "41.4 MB"));
    CHECK(!strcmp(halo_format_count(20500000, b, sizeof b), "20.5 M"));
    CHECK(!strcmp(halo_format_count(999, b, sizeof b), "999"));
    CHECK(!strcmp(halo_format_count(35100000000ull, b, sizeof b), "35.1 B"));
}

static void check_parse(void) {
    uint64_t v = 0;
    CHECK(halo_parse_size("24", 1ull << 30, &v) && v == 24ull << 30);
    CHECK(halo_parse_size("24G", 1, &v) && v == 24ull << 30);
    CHECK(halo_parse_size("24GiB", 1, &v) && v == 24ull << 30);
    CHECK(halo_parse_size("24gib", 1, &v) && v == 24ull << 30);
    CHECK(halo_parse_size("1.5GB", 1, &v) && v == 1500000000ull);
    CHECK(halo_parse_size("512M", 1, &v) && v == 512ull << 20);
    CHECK(halo_parse_size("100B", 1, &v) && v == 100);
    CHECK(!halo_parse_size("", 1, &v));
    CHECK(!halo_parse_size("G", 1, &v));
    CHECK(!halo_parse_size("-1G", 1, &v));
    CHECK(!halo_parse_size("12Q", 1, &v));
    CHECK(!halo_parse_size("1e30T", 1, &v));
    CHECK(!halo_parse_size("nan", 1, &v));
    CHECK(!halo_parse_size("5GiBB", 1, &v));
}

static void check_overflow(void) {
    uint64_t r;
    CHECK(!halo_mul_overflow(1ull << 31, 1ull << 31, &r) && r == 1ull << 62);
    CHECK(halo_mul_overflow(1ull << 32, 1ull << 32, &r));
    CHECK(halo_add_overflow(UINT64_MAX, 1, &r));
    CHECK(halo_align_up(33, 32) == 64 && halo_align_up(64, 32) == 64);
}

static void check_error(void) {
    halo_error e = {0};
    CHECK(halo_error_set(&e, HALO_ERR_FORMAT, "bad %d", 7) == HALO_ERR_FORMAT);
    CHECK(!strcmp(e.msg, "bad 7") && e.status == HALO_ERR_FORMAT);
    /* the first error wins: callers up the stack must not overwrite the cause */
    halo_error_set(&e, HALO_ERR_IO, "later");
    CHECK(!strcmp(e.msg, "bad 7"));
    halo_error_clear(&e);
    CHECK(e.status == 0 && e.msg[0] == 0);
    CHECK(halo_error_set(NULL, HALO_ERR_IO, "no sink") == HALO_ERR_IO);
}

int main(void) {
    check_format();
    check_parse();
    check_overflow();
    check_error();
    CHECK(halo_system_memory_bytes() > 0);
    CHECK(halo_time_seconds() > 0);
    return halo_test_finish("util");
}
