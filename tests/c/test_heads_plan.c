/* Head plans in C: parse, the score map, serialise/parse round trip, building from labels, and
 * every malformed plan refused with its reason (0-based in files, 1-based when base = 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/heads.h"
#include "check.h"

static chai_status parse(chai_heads_plan *p, const char *text, int L, int H) {
  chai_heads_dims d = {L, H, 0};
  return chai_heads_plan_parse(p, text, strlen(text), L || H ? &d : NULL);
}

static void refuse(const char *text, int L, int H, const char *needle) {
  chai_heads_plan p;
  CHECK_ERR(parse(&p, text, L, H), CHAI_ERR_FORMAT, needle);
  CHECK(p.n_layers == 0 && p.layers == NULL);
}

int main(void) {
  const char *good = "{\"layers\":[{\"layer\":2,\"clusters\":[[1],[2,4]]},"
                     "{\"layer\":0,\"clusters\":[[0,3,5],[1],[2,4]]},{\"layer\":1,\"k\":2}],"
                     "\"meta\":{\"model\":\"tiny\",\"n\":[1,2]}}";
  chai_heads_plan p, q;
  CHECK_OK(parse(&p, "{\"layers\":[{\"layer\":0,\"clusters\":[[0,3,5],[1],[2,4]]}]}", 4, 6));
  const chai_heads_layer *l = chai_heads_plan_find(&p, 0);
  CHECK(l && l->k == 3 && l->n_heads == 6 && l->has_clusters);
  int want[6] = {0, 1, 2, 0, 2, 0};
  CHECK(l && memcmp(l->score_head, want, sizeof want) == 0);
  CHECK(chai_heads_plan_find(&p, 1) == NULL);
  chai_heads_plan_free(&p);
  chai_heads_plan_free(&p); /* idempotent */

  /* Without dims, each layer's head count is what it lists; layers come out sorted. */
  CHECK_ERR(parse(&p, good, 0, 0), CHAI_ERR_FORMAT, "layer 2: head 4 out of range (heads 0..2)");
  const char *good2 = "{\"layers\":[{\"layer\":2,\"clusters\":[[1],[0,2]]},"
                      "{\"layer\":0,\"clusters\":[[0,3,5],[1],[2,4]]},{\"layer\":1,\"k\":2}],"
                      "\"meta\":{\"model\":\"tiny\",\"n\":[1,2]}}";
  CHECK_OK(parse(&p, good2, 0, 0));
  CHECK(p.n_layers == 3 && p.layers[0].layer == 0 && p.layers[1].layer == 1 &&
        p.layers[2].layer == 2);
  CHECK(!p.layers[1].has_clusters && p.layers[1].k == 2);
  CHECK(p.layers[2].score_head[2] == 0 && p.layers[2].score_head[1] == 1);
  CHECK(p.meta_json && strstr(p.meta_json, "\"tiny\""));
  char *text = NULL;
  CHECK_OK(chai_heads_plan_to_json(&text, &p));
  CHECK_OK(parse(&q, text, 0, 0));
  char *text2 = NULL;
  CHECK_OK(chai_heads_plan_to_json(&text2, &q));
  CHECK(text && text2 && strcmp(text, text2) == 0);
  CHECK(text && strstr(text, "{\"layer\":0,\"clusters\":[[0,3,5],[1],[2,4]],\"k\":3}"));
  free(text);
  free(text2);
  chai_heads_plan_free(&q);
  CHECK_OK(chai_heads_plan_copy(&q, &p));
  CHECK(q.n_layers == 3 && q.layers[2].score_head[2] == 0 && strcmp(q.meta_json, p.meta_json) == 0);
  chai_heads_plan_free(&q);

  /* File round trip and a missing file. */
  const char *path = "/tmp/chai_test_heads_plan.json";
  CHECK_OK(chai_heads_plan_save(&p, path));
  CHECK_OK(chai_heads_plan_load(&q, path, NULL));
  CHECK(q.n_layers == 3 && q.layers[0].k == 3);
  chai_heads_plan_free(&q);
  remove(path);
  CHECK_ERR(chai_heads_plan_load(&q, "/nonexistent/plan.json", NULL), CHAI_ERR_IO,
            "/nonexistent/plan.json");
  chai_heads_plan_free(&p);

  /* From labels: clusters by lowest member, representative first. */
  int labels[5] = {4, 9, 4, 9, 1};
  CHECK_OK(chai_heads_plan_init(&p, 1));
  CHECK_OK(chai_heads_plan_set_labels(&p, 0, 3, labels, 5));
  chai_heads_dims dims = {4, 5, 1};
  CHECK_OK(chai_heads_plan_validate(&p, &dims));
  l = chai_heads_plan_find(&p, 3);
  int order[5] = {0, 2, 1, 3, 4}, start[4] = {0, 2, 4, 5};
  CHECK(l && l->k == 3 && !memcmp(l->order, order, sizeof order) &&
        !memcmp(l->start, start, sizeof start));
  /* 1-based messages for plans built in memory (Lua). */
  dims.n_layers = 3;
  CHECK_ERR(chai_heads_plan_validate(&p, &dims), CHAI_ERR_ARG,
            "layer 4 out of range (the model has layers 1..3)");
  chai_heads_plan_free(&p);

  /* Every malformed plan, with its reason. */
  refuse("{\"layers\":[", 0, 0, "malformed JSON");
  refuse("[]", 0, 0, "top level must be an object");
  refuse("{\"layers\":{}}", 0, 0, "\"layers\" must be an array");
  refuse("{}", 0, 0, "\"layers\" must be an array");
  refuse("{\"layers\":[],\"extra\":1}", 0, 0, "unknown key \"extra\"");
  refuse("{\"layers\":[3]}", 0, 0, "layers[0] must be an object");
  refuse("{\"layers\":[{\"clusters\":[[0]]}]}", 0, 0, "layers[0] has no \"layer\"");
  refuse("{\"layers\":[{\"layer\":0}]}", 0, 0, "needs \"clusters\" or \"k\"");
  refuse("{\"layers\":[{\"layer\":0.5,\"clusters\":[[0]]}]}", 0, 0, "layer must be an integer");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[[0]],\"heads\":1}]}", 0, 0,
         "unknown key \"heads\"");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[0,1]}]}", 0, 0, "array of arrays");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[[0,\"1\"]]}]}", 0, 0, "must be an integer");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[[0],[1]],\"k\":3}]}", 0, 0,
         "k = 3 but 2 clusters listed");
  refuse("{\"layers\":[{\"layer\":-1,\"clusters\":[[0]]}]}", 0, 0, "layer -1 out of range");
  refuse("{\"layers\":[{\"layer\":4,\"clusters\":[[0]]}]}", 4, 1,
         "layer 4 out of range (the model has layers 0..3)");
  refuse("{\"layers\":[{\"layer\":1,\"clusters\":[[0]]},{\"layer\":1,\"clusters\":[[0]]}]}", 0, 0,
         "layer 1 listed twice");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[]}]}", 0, 0, "layer 0 has no clusters");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[[0],[],[1]]}]}", 0, 0,
         "layer 0: cluster 1 is empty");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[[0,1],[2]]}]}", 2, 4, "layer 0: head 3 missing");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[[0,2]]}]}", 0, 0,
         "layer 0: head 2 out of range (heads 0..1)");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[[0,1],[4,2],[3]]}]}", 2, 4,
         "layer 0: head 4 out of range");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[[0,1],[1,2],[3]]}]}", 2, 4,
         "layer 0: head 1 listed twice");
  refuse("{\"layers\":[{\"layer\":0,\"clusters\":[[0,-1]]}]}", 0, 0, "head -1 out of range");
  refuse("{\"layers\":[{\"layer\":1,\"k\":0}]}", 0, 0, "layer 1: k = 0 must be >= 1");
  refuse("{\"layers\":[{\"layer\":1,\"k\":7}]}", 2, 6, "layer 1: k = 7 outside 1..6");
  return chai_test_finish();
}
