// Runs @ipfs-shipyard/pinning-service-compliance without network access and without touching
// node_modules: loaded with `node --import ./offline.mjs`, it registers a module-load hook that
// rewrites two constants of the suite's dist/src/utils/constants.js as the module is loaded:
//   specLocation -> $PSA_SPEC (a local copy of the PSA spec; swagger-parser reads paths too),
//   docsDir      -> $PSA_REPORT_DIR (where the <hostname>.json/.md reports and logs go; the
//                   suite has no option for it and would write into its own package otherwise).
// Both must be set. scripts/psa-compliance.sh is the normal way in.
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

const CONSTANTS = '/@ipfs-shipyard/pinning-service-compliance/dist/src/utils/constants.js';
let config;

// Hook side (runs on Node's loader thread): the data passed to register() below.
export async function initialize (data) {
  config = data;
}

export async function load (url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (!url.endsWith(CONSTANTS)) return result;
  let source = String(result.source);
  const replace = (pattern, value, what) => {
    if (!pattern.test(source)) {
      throw new Error(`offline.mjs: ${what} not found in ${url}; the suite changed, update the hook`);
    }
    source = source.replace(pattern, `$1${JSON.stringify(value)};`);
  };
  replace(/^(const specLocation = ).*;$/m, config.spec, 'specLocation');
  replace(/^(const docsDir = ).*;$/m, config.reportDir, 'docsDir');
  return { ...result, source, shortCircuit: true };
}

// Entry side (main thread, via --import): check the settings and register this file as the hook.
if (isMainThread) {
  const spec = process.env.PSA_SPEC;
  const reportDir = process.env.PSA_REPORT_DIR;
  if (!spec || !reportDir) {
    console.error('offline.mjs: set PSA_SPEC (local spec file) and PSA_REPORT_DIR (report directory)');
    process.exit(2);
  }
  register(import.meta.url, { data: { spec, reportDir } });
}
