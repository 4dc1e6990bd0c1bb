/*
 * libFuzzer target for the server's request validation: arbitrary bytes as the
 * body of /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings and
 * /embedding. Each must be accepted or rejected with a 400 and a message, never crash or
 * leak; a rejection's error JSON must parse back.
 * Run: ./fuzz_server_request -max_len=4096 corpus/ fuzz/seeds/fuzz_server_request
 */
#include "server/server.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int kind = 0; kind < 5; kind++) {
        halo_api_error e = {0};
        const char *body = (const char *)data;
        int rc = kind == 4   ? halo_api_check_embeddings(body, size, false, &e)
                 : kind == 3 ? halo_api_check_embeddings(body, size, true, &e)
                 : kind == 2 ? halo_api_check_responses(body, size, &e)
                 : kind == 1 ? halo_api_check_completion(body, size, &e)
                             : halo_api_check_chat(body, size, &e);
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
