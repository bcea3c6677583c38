// Prints the closing line CI reads: "N passed, N failed". A test file that fails to load,
// and an unhandled error, each count as a failure; skipped tests are listed, never counted as passed.

import type { Reporter, SerializedError, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandled: ReadonlyArray<SerializedError>): void {
    let passed = 0;
    let failed = unhandled.length;
    const skipped: string[] = [];
    for (const mod of modules) {
      let failedHere = 0;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed += 1;
        else if (state === 'failed') failedHere += 1;
        else skipped.push(`${mod.moduleId.replace(/^.*\/test\//, 'test/')} > ${test.fullName}`);
      }
      if (failedHere === 0 && mod.state() === 'failed') failedHere = 1;
      failed += failedHere;
    }
    if (skipped.length > 0) {
      process.stdout.write(`\n${skipped.length} skipped (not counted as passed):\n${skipped.map((s) => `  - ${s}`).join('\n')}\n`);
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
  }
}
