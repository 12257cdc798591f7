-- chai.tokenizer: loading, encode/decode (the README anchors), batch padding and truncation, the
-- config files, and the errors of bad input. The id-by-id agreement with the GPT-2 reference is
-- tests/c/test_tokenizer.c (and, over the whole data files, test_tokenizer_sweep.c).
local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
package.path = dir .. "?.lua;" .. package.path
local T = require "helper"
local chai = require "chai"

local tokdir = assert(os.getenv("CHAI_TEST_FIXTURES"), "CHAI_TEST_FIXTURES unset") .. "/data/opt-tokenizer"
local tok = chai.tokenizer.load(tokdir)

-- fields
T.eq(tok.vocab_size, 50265, "vocab_size")
T.eq({tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id}, {2, 2, 1, 3}, "special ids")
T.eq(tok.add_bos, false, "no tokenizer_config.json: no bos, as GPT2Tokenizer")
T.check(tostring(tok):find("chai.Tokenizer", 1, true), "tostring")
T.eq(tok.no_such_field, nil, "unknown field is nil")

-- encode / decode
T.eq(tok:encode("Hello"), {31414}, "Hello")
T.eq(tok:encode("Hello world"), {31414, 232}, "Hello world")
T.eq(tok:encode("Hello world", {add_bos = true}), {2, 31414, 232}, "with bos")
T.eq(tok:encode("it 's a charming and often affecting journey ."),
  {405, 128, 29, 10, 18452, 8, 747, 7920, 3251, 479}, "sst2 dev sentence 1")
T.eq(tok:encode("Hello, my dog is cute"), {31414, 6, 127, 2335, 16, 11962}, "Hello, my dog")
T.eq(tok:encode(""), {}, "empty text")
T.eq(tok:decode({31414, 232}), "Hello world", "decode")
T.eq(tok:decode({2, 31414, 232, 1}), "</s>Hello world<pad>", "decode keeps specials")
T.eq(tok:decode({2, 31414, 232, 1}, {skip_special = true}), "Hello world", "skip_special")
T.eq(tok:decode({}), "", "decode nothing")
T.eq(tok:decode(chai.tensor({31414, 232}, "i32")), "Hello world", "decode an i32 tensor")
T.eq(tok:decode(chai.tensor({31414, 232}, "i64")), "Hello world", "decode an i64 tensor")
for _, s in ipairs {"naïve café 😀 ÿ", "  two  spaces\t\n", "a\0b", "\xff\xfe broken \xe2\x82",
                    "Question: x?\nAnswer:"} do
  T.eq(tok:decode(tok:encode(s)), s, "round trip " .. ("%q"):format(s))
end
-- lm-eval's _encode_pair relies on this: the context's ids are a prefix of the joined ids here
local ctx = "great movie\nQuestion: Is this sentence positive or negative?\nAnswer:"
local whole, c = tok:encode(ctx .. " positive"), tok:encode(ctx)
T.eq({table.unpack(whole, 1, #c)}, c, "context ids are a prefix")
T.eq(tok:decode({table.unpack(whole, #c + 1)}), " positive", "continuation")

T.eq(tok:token_to_id("\u{120}the"), 5, "token_to_id")
T.eq(tok:token_to_id("no such token"), nil, "token_to_id unknown")
T.eq(tok:id_to_token(5), "\u{120}the", "id_to_token")
T.eq(tok:id_to_token(50265), nil, "id_to_token out of range")
T.check(tok:is_special(2) and tok:is_special(1) and not tok:is_special(31414), "is_special")

-- encode/decode errors
T.raises(function() tok:encode({}) end, "string expected", "encode a table")
T.raises(function() tok:encode("x", {add_bos = 1}) end, "option add_bos must be a boolean")
T.raises(function() tok:encode("x", {bos = true}) end, {"tok:encode", "unknown option 'bos'"})
T.raises(function() tok:decode({31414, 50265}) end, "id 50265 at position 1 is not in the vocabulary")
T.raises(function() tok:decode({-1}) end, "id -1 at position 0")
T.raises(function() tok:decode({1, 2.5}) end, "ids[2] is 2.5, not an integer")
T.raises(function() tok:decode({1, "x"}) end, "ids[2] is string")
T.raises(function() tok:decode({2 ^ 40}) end, "out of range")
T.raises(function() tok:decode("Hello") end, "table expected")
T.raises(function() tok:decode(chai.tensor({{1, 2}}, "i32")) end, "expected a 1-dim i32 or i64")
T.raises(function() tok:decode(chai.tensor({1, 2}, "f32")) end, "expected a 1-dim i32 or i64")
T.raises(function() tok:decode({1}, {skip = true}) end, "unknown option 'skip'")

-- batch: right padding (default), masks
local ids, mask = tok:batch({"Hello world", "Hello", ""})
T.eq(ids, {{31414, 232}, {31414, 1}, {1, 1}}, "batch ids, right padded")
T.eq(mask, {{1, 1}, {1, 0}, {0, 0}}, "batch mask")
ids, mask = tok:batch({"Hello world", "Hello"}, {pad = "left", add_bos = true})
T.eq(ids, {{2, 31414, 232}, {1, 2, 31414}}, "left padded with bos")
T.eq(mask, {{1, 1, 1}, {0, 1, 1}}, "left mask")
-- truncation keeps the bos token
local long = "it 's a charming and often affecting journey ."
ids, mask = tok:batch({long, "Hello"}, {max_length = 4, truncation = true, add_bos = true})
T.eq(ids, {{2, 405, 128, 29}, {2, 31414, 1, 1}}, "truncation right")
T.eq(mask, {{1, 1, 1, 1}, {1, 1, 0, 0}}, "truncation mask")
ids = tok:batch({long}, {max_length = 3, truncation = "left"})
T.eq(ids, {{7920, 3251, 479}}, "truncation left keeps the end")
ids = tok:batch({long, "Hello"}, {max_length = 20})
T.eq(#ids[1], 10, "max_length only caps; rows pad to the longest")
ids, mask = tok:batch({}, {})
T.eq(ids, {}, "empty batch")
-- tensors
local ti, tm = tok:batch({"Hello world", "Hello"}, {tensors = true, pad = "left"})
T.check(chai.is_tensor(ti) and ti:dtype() == "i32", "tensors=true gives i32 tensors")
T.eq(ti:shape(), {2, 2}, "tensor shape")
T.eq(ti:totable(), {{31414, 232}, {1, 31414}}, "tensor ids")
T.eq(tm:totable(), {{1, 1}, {0, 1}}, "tensor mask")
ti = tok:batch({"", ""}, {tensors = true})
T.eq(ti:shape(), {2, 0}, "all-empty batch gives (B, 0)")

-- batch errors name the option and the value
T.raises(function() tok:batch("Hello") end, "texts must be a table of strings, got string")
T.raises(function() tok:batch({"a", 7}) end, "texts[2] is a number, not a string")
T.raises(function() tok:batch({"a"}, {padding = "left"}) end, {"tok:batch", "unknown option 'padding'"})
T.raises(function() tok:batch({"a"}, {pad = "middle"}) end, "option pad must be \"left\" or \"right\", got middle")
T.raises(function() tok:batch({"a"}, {max_length = 0}) end, "max_length must be an integer >= 1, got 0")
T.raises(function() tok:batch({"a"}, {max_length = 2.5}) end, "max_length must be an integer >= 1, got 2.5")
T.raises(function() tok:batch({"a"}, {truncation = "up", max_length = 3}) end,
  "option truncation must be true, false, \"right\" or \"left\", got up")
T.raises(function() tok:batch({"a"}, {truncation = true}) end, "truncation needs max_length")
T.raises(function() tok:batch({long}, {max_length = 5}) end,
  "texts[1] has 10 tokens, more than max_length 5")
T.raises(function() tok:batch({long}, {max_length = 5, add_bos = true}) end,
  "texts[1] has 11 tokens with bos, more than max_length 5")
T.raises(function() tok:batch({"a"}, {add_bos = "yes"}) end, "option add_bos must be a boolean")
T.raises(function() tok:batch({"a"}, {tensors = 1}) end, "option tensors must be a boolean")
T.raises(function() tok:batch({"a"}, 5) end, "options must be a table")

-- tokenizer_config.json: OPT's add_bos_token, and overriding it
local tmp = T.tmpdir()
assert(os.execute(("ln -s '%s/vocab.json' '%s/vocab.json' && ln -s '%s/merges.txt' '%s/merges.txt'")
  :format(tokdir, tmp, tokdir, tmp)))
T.write_bytes(tmp .. "/tokenizer_config.json",
  '{"add_bos_token": true, "bos_token": {"content": "</s>"}, "pad_token": "<pad>"}')
local opt = chai.tokenizer.load(tmp)
T.eq(opt.add_bos, true, "add_bos_token from tokenizer_config.json")
T.eq(opt:encode("Hello world"), {2, 31414, 232}, "OPT prepends </s>")
T.eq(opt:encode("Hello world", {add_bos = false}), {31414, 232}, "per-call override")
T.eq(opt:batch({"Hello"}), {{2, 31414}}, "batch follows the default")
local nobos = chai.tokenizer.load(tmp, {add_bos = false})
T.eq(nobos:encode("Hello world"), {31414, 232}, "load-time override")
-- free: idempotent, later use raises
opt:free()
opt:free()
T.raises(function() opt:encode("x") end, "tokenizer used after free")
T.raises(function() return opt.vocab_size end, "tokenizer used after free")
T.check(tostring(opt):find("freed", 1, true), "tostring of a freed tokenizer")
do
  local scoped <close> = chai.tokenizer.load(tokdir)
  T.eq(scoped:encode("Hello"), {31414}, "to-be-closed tokenizer")
end

-- load errors
T.raises(function() chai.tokenizer.load("/nonexistent/tokenizer") end,
  "no such folder '/nonexistent/tokenizer'")
T.raises(function() chai.tokenizer.load(42) end, "expected a folder or a Hub repo id, got number")
T.raises(function() chai.tokenizer.load(tokdir, {bos = true}) end,
  {"chai.tokenizer.load", "unknown option 'bos'"})
T.raises(function() chai.tokenizer.load(tokdir, {add_bos = "yes"}) end,
  "option add_bos must be a boolean")
T.raises(function() chai.tokenizer.load(tokdir, {revision = "main"}) end,
  "option revision applies to Hub ids")
local empty = T.tmpdir()
T.raises(function() chai.tokenizer.load(empty) end, {"cannot open", empty .. "/vocab.json"})
T.write_bytes(empty .. "/vocab.json", "{not json")
T.write_bytes(empty .. "/merges.txt", "")
T.raises(function() chai.tokenizer.load(empty) end, {empty .. "/vocab.json", "invalid JSON"})
T.write_bytes(tmp .. "/tokenizer_config.json", '{"add_bos_token": 1}')
T.raises(function() chai.tokenizer.load(tmp) end, "add_bos_token must be true or false")
T.raises(function() chai.tokenizer.load(tokdir, {cache_dir = "/x"}) end,
  "option cache_dir applies to Hub ids")
local has_hub, hub = pcall(require, "chai.hub")
if has_hub and type(hub) == "table" and hub.snapshot then
  -- a Hub id, answered offline from a cache laid out by hand as huggingface_hub does:
  -- refs/main -> commit, snapshots/<commit>/<files>, .no_exist/<commit>/<file known to be absent>
  local cache = T.tmpdir()
  local commit = string.rep("ab", 20)
  local repo = cache .. "/models--facebook--opt-test"
  assert(os.execute(("mkdir -p '%s/refs' '%s/snapshots/%s' '%s/.no_exist/%s'"):format(
    repo, repo, commit, repo, commit)))
  T.write_bytes(repo .. "/refs/main", commit)
  local snap = repo .. "/snapshots/" .. commit
  assert(os.execute(("ln -s '%s/vocab.json' '%s/vocab.json' && ln -s '%s/merges.txt' '%s/merges.txt'")
    :format(tokdir, snap, tokdir, snap)))
  T.write_bytes(snap .. "/tokenizer_config.json", '{"add_bos_token": true}')
  T.write_bytes(repo .. "/.no_exist/" .. commit .. "/special_tokens_map.json", "")
  local hopts = {offline = true, cache_dir = cache, quiet = true}
  local htok = chai.tokenizer.load("facebook/opt-test", hopts)
  T.eq(htok:encode("Hello world"), {2, 31414, 232}, "a Hub id: files and tokenizer_config.json")
  T.eq(htok.pad_id, 1, "Hub id pad")
  hopts.add_bos = false
  T.eq(chai.tokenizer.load("facebook/opt-test", hopts):encode("Hello"), {31414}, "Hub id add_bos")
  T.raises(function() chai.tokenizer.load("facebook/opt-none", {offline = true, cache_dir = cache}) end,
    "facebook/opt-none")
else
  T.raises(function() chai.tokenizer.load("facebook/opt-125m") end,
    {"'facebook/opt-125m' is not a folder", "chai.hub"})
end

-- docs/tokenizer.md: every ```lua block runs and asserts its own claims
T.run_doc_blocks("tokenizer.md", 4)

T.finish()
