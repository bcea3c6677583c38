// Preloaded into the real binary by crash tests (node --import): every file write
// waits TOKEND_TEST_WRITE_DELAY_MS first, as on a slow disk, so that a kill -9 can
// land inside a write deterministically instead of by luck. Test-only fault injection.

import fs from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';

const delay = Number(process.env.TOKEND_TEST_WRITE_DELAY_MS ?? 0);
const sleep = () => new Promise((resolve) => setTimeout(resolve, delay));

const writeFile = fs.writeFile;
fs.writeFile = async (...args) => {
  await sleep();
  return writeFile(...args);
};
const handle = await fs.open(import.meta.dirname, 'r');
const proto = Object.getPrototypeOf(handle);
await handle.close();
const handleWriteFile = proto.writeFile;
proto.writeFile = async function (...args) {
  await sleep();
  return handleWriteFile.apply(this, args);
};
syncBuiltinESMExports();
