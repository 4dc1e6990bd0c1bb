/*
 * libFuzzer target for the server's request validation: arbitrary bytes as the
 * body of /v1/chat/completions, /v1/completions and /v1/responses. Each must be accepted or
 * rejected with a 400 and a message, never crash or leak; a rejection's error
 * JSON must parse back.
 * Run: ./fuzz_server_request -max_len=4096 corpus/ fuzz/seeds/fuzz_server_request
 */
#include "server/server.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int kind = 0; kind < 3; kind++) {
        halo_api_error e = {0};
        int rc = kind == 2   ? halo_api_check_responses((const char *)data, size, &e)
                 : kind == 1 ? halo_api_check_completion((const char *)data, size, &e)
                             : halo_api_check_chat((const char *)data, size, &e);
        if (rc == 0) continue;
        if (e.status != 400 || !e.message[0]) abort();
        char *json = halo_api_error_json(&e);
        cJSON *o = json ? cJSON_Parse(json) : NULL;
        if (!o) abort();
        cJSON_Delete(o);
        free(json);
    }
    return 0;
}
