/*
 * A minimal test harness: CHECK-style assertions that count, report the first
 * failures with file:line, and a fixtures locator that turns "fixtures absent"
 * into a skip (exit 77, which CTest reports as skipped) with the reason printed.
 */
#ifndef HALO_TEST_HARNESS_H
#define HALO_TEST_HARNESS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int halo_test_failures;
extern int halo_test_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        halo_test_checks++;                                                                        \
        if (!(cond)) {                                                                             \
            halo_test_failures++;                                                                  \
            if (halo_test_failures <= 50)                                                          \
                fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        halo_test_checks++;                                                                        \
        if (!(cond)) {                                                                             \
            halo_test_failures++;                                                                  \
            if (halo_test_failures <= 50) {                                                        \
                fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);         \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* Directory of ../shared/fixtures: $HALO_FIXTURES, else the build's default.
 * Returns NULL (and prints why) when it does not exist. */
const char *halo_test_fixtures(void);
/* "<fixtures>/<rel>" in a static buffer rotation (4 slots). */
const char *halo_test_fixture_path(const char *rel);
/* Exit 77 (skipped) with the reason if the fixtures are absent. */
void halo_test_require_fixtures(void);
/* Read a whole file; NULL on failure. *size set. Caller frees. */
void *halo_test_read_file(const char *path, size_t *size);
/* A fresh temporary directory for this test (removed at exit). */
const char *halo_test_tmpdir(void);
/* Print the summary line and return the exit code. */
int halo_test_finish(const char *name);

#endif
