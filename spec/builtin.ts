/** Registers the stage kinds judgeflow ships. Import once at the edge (CLI) before loading specs. */
import './kinds/evaluate.js';
import './kinds/synthesize.js';
import './kinds/sweep.js';
import './kinds/distill.js';
import './kinds/train.js';
import './kinds/serve.js';
