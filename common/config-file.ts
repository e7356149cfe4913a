import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { MidcertError } from './errors.js';

/**
 * Parses a YAML config text and validates it with a zod schema. Errors name the file and the
 * first offending key, e.g. `agent.yaml: service.start: required …` (CONFIG_INVALID).
 */
export function parseYamlConfig<S extends z.ZodType>(text: string, source: string, schema: S): z.infer<S> {
  let raw: unknown;
  try {
    raw = parseYaml(text, { maxAliasCount: 50 });
  } catch (err) {
    throw new MidcertError('CONFIG_INVALID', `${source}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const result = schema.safeParse(raw ?? {});
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    throw new MidcertError('CONFIG_INVALID', `${source}: ${where}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data;
}
