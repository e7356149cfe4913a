/**
 * The lab's two-tier CA, standing in for a company CA such as ADCS. Tests, the simulators and
 * the demo all issue from it; nothing is committed to the repo. It is the product's own local CA
 * (pki/two-tier-ca.ts, files by controller/ca/local-files.ts) under lab names: the lab depends on
 * the product here, never the other way round.
 */
import { loadCaFiles, saveCaFiles } from '../controller/ca/local-files.js';
import { createTwoTierCa, type Identity, type SignOptions, type TwoTierCa } from '../pki/two-tier-ca.js';

export type { Identity, SignOptions };
export type LabCa = TwoTierCa;

export function createLabCa(name = 'midcert Lab'): Promise<LabCa> {
  return createTwoTierCa(name, 'midcert Lab');
}

/** Writes root.pem, root.key, intermediate.pem, intermediate.key, chain.pem (keys 0600). */
export const saveLabCa = saveCaFiles;
export const loadLabCa = loadCaFiles;
