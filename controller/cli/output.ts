import type * as HumanOutput from '../../common/human-output.js';

/**
 * Human output for the controller's commands (tables on cli-table3, progress on cli-progress, in
 * common/human-output.ts). Those libraries load only when a command runs: the program's
 * preAction hook calls loadHumanOutput(), so --version and --help never pay for them.
 */
export type { Progress, TableOptions } from '../../common/human-output.js';

let impl: typeof HumanOutput | undefined;

export async function loadHumanOutput(): Promise<void> {
  impl ??= await import('../../common/human-output.js');
}

function loaded(): typeof HumanOutput {
  if (!impl) throw new Error('human output used before loadHumanOutput()');
  return impl;
}

export const renderTable: typeof HumanOutput.renderTable = (...args) => loaded().renderTable(...args);
export const createProgress: typeof HumanOutput.createProgress = (...args) => loaded().createProgress(...args);
