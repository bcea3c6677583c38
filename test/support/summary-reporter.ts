// Prints the closing line CI reads: "N passed, N failed". A test file that fails to load,
// and an unhandled error, each count as a failure; skipped tests are listed, never counted as passed.
// It also runs the cross-suite leak scan (test/support/leak-watch.ts): a token value found in
// any captured output or test console output is a failure too.

import type { Reporter, SerializedError, TestModule } from 'vitest/node';
import { recordOutput, scanForLeaks } from './leak-watch.js';

export default class SummaryReporter implements Reporter {
  onUserConsoleLog(log: { content: string }): void {
    recordOutput('test-console', log.content);
  }

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
    const leakDir = process.env.TOKEND_LEAK_DIR;
    if (leakDir) {
      const scan = scanForLeaks(leakDir);
      process.stdout.write(`\nleak scan: ${scan.secrets} token value(s) × ${scan.outputs} captured output(s) (${(scan.bytes / 1e6).toFixed(1)} MB): ${scan.hits.length} hit(s)\n`);
      for (const hit of scan.hits) process.stdout.write(`  LEAK ${hit}\n`);
      if (scan.hits.length > 0) {
        failed += 1;
        process.exitCode = 1;
      }
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
  }
}
