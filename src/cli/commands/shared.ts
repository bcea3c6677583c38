// Small pieces several commands share.

import { KEYFILE_WARNING } from '../../kms/keyfile.js';
import type { KeyProvider } from '../../kms/provider.js';
import { note } from '../command.js';
import type { CommandContext } from '../command.js';

/** Prints the development-mock warning when the keyfile provider is in use. */
export function warnIfKeyfile(ctx: CommandContext, provider: KeyProvider): void {
  if (provider.name === 'keyfile') note(ctx, `warning: ${KEYFILE_WARNING}`);
}
