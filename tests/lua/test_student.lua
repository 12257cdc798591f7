-- chai.student.ensure: the default model of the search is trained on first use and cached (a
-- tiny architecture on 64 rows here, so the test is quick), the second call reuses it, and without
-- data the error names both ways to get it.
local chai = require "chai"
local T = require "helper"
local chai_bin = assert(os.getenv("CHAI_BUILD_DIR"), "CHAI_BUILD_DIR unset") .. "/chai"
local data_dir = os.getenv("CHAI_DATA_DIR")

local tiny = {vocab_size = 50272, hidden_size = 8, num_hidden_layers = 1, num_attention_heads = 2,
              ffn_dim = 16, max_position_embeddings = 64, num_labels = 2}
if data_dir and io.open(data_dir .. "/sst2/glue_train.tsv", "rb") then
  local dir = T.tmpdir()
  local lines = {}
  local path, trained = chai.student.ensure({dir = dir, quick = true, config = tiny, rows = 64,
                                             log = function(l) lines[#lines + 1] = l end})
  T.eq(path, dir .. "/sst2-opt-student-quick", "--quick trains its own smaller student")
  T.check(trained and #lines == 2 and lines[2]:find("dev accuracy", 1, true), "it says what it trained")
  local m = chai.opt.load(path)
  T.eq(m.config.hidden_size, 8, "the model was saved")
  local rec = chai.student.load_results(dir)["sst2-opt-student-quick"]
  T.check(rec and rec.steps == 2 and rec.seed == 1, "the run is recorded in sst2-results.json")
  local again, trained2 = chai.student.ensure({dir = dir, quick = true, config = tiny, rows = 64})
  T.check(again == path and trained2 == false, "the second call reuses the cached model")
  -- The full default model, when present, serves --quick too.
  os.execute(("cp -r '%s' '%s/sst2-opt-student'"):format(path, dir))
  T.eq((chai.student.ensure({dir = dir, quick = true})), dir .. "/sst2-opt-student", "the full model wins")
else
  print("SKIP (training part): no SST-2 in CHAI_DATA_DIR")
end

-- No data folder and no Hub: one message naming both ways.
local empty = T.tmpdir()
local p = io.popen(("CHAI_DATA_DIR='%s' HF_HUB_OFFLINE=1 HF_HUB_CACHE='%s' '%s' -e 'require(\"chai\").student.data()' 2>&1"):format(
  empty, empty, chai_bin))
local text = p:read("a")
p:close()
T.check(text:find("CHAI_DATA_DIR", 1, true) and text:find("network", 1, true), "the error names both ways: " .. text)
T.finish()
