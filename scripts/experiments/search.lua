-- The main job: searches CHAI, quantization, targeted fine-tuning and distillation configurations
-- of a model on a task, measures every one against the unmodified model, and writes the results,
-- a report and the chosen model. With no options: chai's own SST-2 classifier (trained on first
-- use) and the default space.
--
--   chai script experiments/search.lua [--model M] [--task sst2|rte|piqa] [--criterion C]
--        [--configs LIST] [--orders all|paper|LIST] [--grid K=V,V ...] [--budget MIN] [--out DIR]
--        [--resume DIR] [--quick] [--seed N] [--format md]
--
-- Under mpirun (mpirun -n N chai script experiments/search.lua ...) the configurations are dealt
-- to the ranks and rank 1 gathers the results and writes the folder (docs/distributed.md).
-- Everything is in lua/chai/search.lua (chai serve runs the same code); --help lists the options,
-- docs/search.md explains the space, the measurements and the report. Exit status: 0 finished or
-- stopped cleanly (budget, Ctrl-C, SIGTERM), 2 bad options, 1 other errors.
local status = require("chai.search").main({...})
if status ~= 0 then os.exit(status, true) end
