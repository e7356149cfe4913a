import assert from 'node:assert/strict';
import { MidcertError } from '../../common/errors.js';
import { LIMITS } from '../../common/limits.js';
import { readCertificates } from '../../pki/certificate.js';
import { parseCsr, buildCsr } from '../../pki/csr.js';
import { readKeystore } from '../../pki/keystore.js';
import { readPrivateKey } from '../../pki/keys.js';
import { lintBundle } from '../../pki/lint.js';
import { parseSubject } from '../../pki/name.js';
import { readPkcs12 } from '../../pki/pkcs12.js';
import { makeLabPki, type LabPki } from '../helpers/lab-pki.js';
import { runOk } from '../helpers/run.js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Deterministic PRNG (mulberry32) so a failing case can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(next: () => number, size: number): Buffer {
  return Buffer.from(Array.from({ length: size }, () => Math.floor(next() * 256)));
}

function mutate(next: () => number, input: Buffer): Buffer {
  const out = Buffer.from(input);
  const flips = 1 + Math.floor(next() * 8);
  for (let i = 0; i < flips; i++) out[Math.floor(next() * out.length)] = Math.floor(next() * 256);
  return out;
}

/** Nested SEQUENCEs with long-form lengths: a classic parser stack/length trap. */
function deepNesting(depth: number): Buffer {
  let inner = Buffer.from([0x05, 0x00]);
  for (let i = 0; i < depth; i++) {
    const len = inner.length;
    const header = len < 128 ? Buffer.from([0x30, len]) : Buffer.from([0x30, 0x84, (len >>> 24) & 0xff, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff]);
    inner = Buffer.concat([header, inner]);
  }
  return inner;
}

type Parser = (bytes: Buffer) => unknown;

/**
 * Text of the runtime or of a library, never ours (Node's RangeError for a read past a buffer,
 * OpenSSL's and forge's parser errors, jks-js's own): it must not reach a user's message.
 */
const RUNTIME_TEXT = /out of range|"offset"|Invalid string length|routines::|error:[0-9A-F]{8}|Too few bytes|Unparsed DER|Cannot read propert|is not a function|buffer bounds|Invalid keystore format|bits supported|is not expected/;

/** The parser returns, or throws a MidcertError with our own words; anything else (TypeError, RangeError…) fails. */
function assertTyped(name: string, parse: Parser, input: Buffer, label: string): void {
  try {
    parse(input);
  } catch (err) {
    assert.ok(err instanceof MidcertError, `${name} threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message} on ${label}`);
    assert.doesNotMatch(err.message, RUNTIME_TEXT, `${name} let runtime text through on ${label}`);
  }
}

describe('pki parsers under fuzzing: typed errors only, never a crash or hang', function () {
  this.timeout(120_000);
  let pki: LabPki;
  let samples: Record<string, Buffer>;
  let dir: string;

  before(async () => {
    pki = await makeLabPki();
    dir = await mkdtemp(join(tmpdir(), 'midcert-fuzz-'));
    await writeFile(join(dir, 'bundle.pem'), pki.bundle);
    await runOk('openssl', ['pkcs12', '-export', '-in', join(dir, 'bundle.pem'), '-out', join(dir, 'b.p12'), '-passout', 'pass:changeit', '-name', 'defaultsecuritykeypairhandle']);
    await runOk('keytool', ['-importkeystore', '-noprompt', '-srckeystore', join(dir, 'b.p12'), '-srcstoretype', 'PKCS12', '-srcstorepass', 'changeit',
      '-destkeystore', join(dir, 'ks.jks'), '-deststoretype', 'JKS', '-deststorepass', 'changeit', '-destkeypass', 'changeit']);
    samples = {
      bundle: Buffer.from(pki.bundle),
      certDer: pki.leaf.cert.der,
      key: Buffer.from(pki.leaf.keyPem),
      csr: Buffer.from(buildCsr(pki.leaf.key, { subject: 'CN=mid01' })),
      pfx: await readFile(join(dir, 'b.p12')),
      jks: await readFile(join(dir, 'ks.jks')),
    };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const parsers: Record<string, { parse: Parser; sample: string; limit: number }> = {
    readCertificates: { parse: (b) => readCertificates(b), sample: 'certDer', limit: LIMITS.pemBytes },
    readPrivateKey: { parse: (b) => readPrivateKey(b), sample: 'key', limit: LIMITS.pemBytes },
    parseCsr: { parse: (b) => parseCsr(b), sample: 'csr', limit: LIMITS.pemBytes },
    lintBundle: { parse: (b) => lintBundle(b), sample: 'bundle', limit: LIMITS.pemBytes },
    readPkcs12: { parse: (b) => readPkcs12(b, 'changeit'), sample: 'pfx', limit: LIMITS.pfxBytes },
    readKeystore: { parse: (b) => readKeystore(b, 'changeit'), sample: 'jks', limit: LIMITS.keystoreBytes },
  };

  for (const [name, { parse, sample, limit }] of Object.entries(parsers)) {
    describe(name, () => {
      it('survives random bytes (300 seeded cases)', () => {
        const next = prng(0x5eed + name.length);
        for (let i = 0; i < 300; i++) assertTyped(name, parse, randomBytes(next, Math.floor(next() * 4096)), `random case ${i}`);
      });

      it('survives every truncation of a valid input', () => {
        const input = samples[sample] as Buffer;
        const step = Math.max(1, Math.floor(input.length / 150));
        for (let cut = 0; cut < input.length; cut += step) assertTyped(name, parse, input.subarray(0, cut), `truncated at ${cut}`);
      });

      it('survives byte mutations of a valid input (300 seeded cases)', () => {
        const next = prng(0xf00d + name.length);
        for (let i = 0; i < 300; i++) assertTyped(name, parse, mutate(next, samples[sample] as Buffer), `mutation case ${i}`);
      });

      it('survives deeply nested ASN.1', () => {
        for (const depth of [64, 1000, 20000]) assertTyped(name, parse, deepNesting(depth), `nesting ${depth}`);
      });

      it('refuses input over its documented bound with INPUT_TOO_LARGE', () => {
        assert.throws(() => parse(Buffer.alloc(limit + 1, 0x30)), (e: unknown) => e instanceof MidcertError && e.code === 'INPUT_TOO_LARGE');
      });
    });
  }

  it('parseSubject survives random text', () => {
    const next = prng(42);
    for (let i = 0; i < 500; i++) {
      const text = randomBytes(next, Math.floor(next() * 200)).toString('latin1');
      assertTyped('parseSubject', () => parseSubject(text), Buffer.alloc(0), JSON.stringify(text));
    }
  });
});
