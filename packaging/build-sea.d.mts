/** Types for packaging/build-sea.mjs (used by test/packaging/*.test.ts). */
export declare const ROOT: string;
export declare const SEA_FUSE: string;

export interface SeaTarget {
  /** The executable's file name, e.g. "midcert-agent". */
  name: string;
  /** The entry module, relative to the repo root. */
  entry: string;
  /** Repo files outside agent/ controller/ common/ pki/ proto/ that this target may bundle. */
  allow: string[];
  /** Check that `<binary> --version` prints package.json's version (default true). */
  checkVersion?: boolean;
}

export declare const TARGETS: Record<'agent' | 'controller', SeaTarget>;
export declare const NATIVE: Record<string, { asset: string; stem: string; file: string; names: string[] }>;

export interface BuildOptions {
  outDir?: string;
  nodeBin?: string;
  workRoot?: string;
  keepWork?: boolean;
  codeCache?: boolean;
  minify?: boolean;
  log?: (message: string) => void;
}

export interface BuiltTarget {
  target: string;
  name: string;
  path: string;
  version: string;
  node: string;
  sizeBytes: number;
  mainBytes: number;
  blobBytes: number;
  assets: string[];
  nativeAddons: string[];
  ownFiles: number;
  packages: Record<string, number>;
  blobSha256: string;
  buildSeconds: number;
  workDir?: string;
}

export interface BundleResult {
  code: string;
  warnings: string[];
  inputs: string[];
  ownFiles: string[];
  packages: Map<string, number>;
  usedNative: string[];
}

export declare function protoAssets(): Promise<Record<string, string>>;
export declare function bundle(target: SeaTarget, options?: { minify?: boolean }): Promise<BundleResult>;
export declare function wrapAsCommonJs(esmCode: string, target: SeaTarget, version: string): { code: string; leftovers: string[] };
export declare function buildTarget(key: 'agent' | 'controller' | SeaTarget, options?: BuildOptions): Promise<BuiltTarget>;
export declare function main(argv?: string[]): Promise<number>;
