/** Types for packaging/build-windows.mjs (used by test/windows/*.test.ts). */
export declare const NODE_VERSION: string;
export declare const PIN_DIR: string;

export interface NodeWinPin {
  package: string;
  version: string;
  tarball?: string;
  integrity: string;
  nodeExe: string;
  nodeExeSha512: string;
}

export declare function readPin(version?: string): Promise<NodeWinPin>;
export declare function cacheDir(env?: NodeJS.ProcessEnv): string;
export declare function windowsNodeExe(options?: { pin?: NodeWinPin; version?: string; nodeTgz?: string; cacheDir?: string; log?: (m: string) => void }): Promise<{ path: string; pin: NodeWinPin; fromCache: boolean }>;

export interface WineResult {
  status: number | null;
  stdout: string;
  stderr: string;
  error?: Error;
}
export declare function runUnderWine(exe: string, args: string[], options?: { workDir?: string; cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): WineResult;
export declare function hasWine(): boolean;

export interface BuiltWindows {
  name: string;
  path: string;
  version: string;
  node: string;
  nodeFromCache: boolean;
  sizeBytes: number;
  assets: string[];
  sha256: string;
  checked: boolean;
  zip?: string;
  /** winsw.exe and winsw.exe.config copied next to the exe. */
  wrapper: string[];
  buildSeconds: number;
}
export declare function buildWindows(options?: { outDir?: string; nodeTgz?: string; winswTgz?: string; winsw?: boolean; cacheDir?: string; check?: boolean; zip?: boolean; minify?: boolean; log?: (m: string) => void }): Promise<BuiltWindows>;
export declare function releaseZip(exePath: string, version: string, outDir: string, binExtras?: string[]): Promise<string>;

export interface WinswPin { package: string; version: string; tarball?: string; integrity: string; winsw?: string; files: Record<string, string> }
export declare const WINSW_PIN: string;
export declare function readWinswPin(): Promise<WinswPin>;
export declare function winswFiles(options?: { pin?: WinswPin; cacheDir?: string; winswTgz?: string; log?: (m: string) => void }): Promise<string[]>;
export declare function zipArchive(entries: { name: string; data: Buffer }[], date: Date): Buffer;
export declare function main(argv?: string[]): Promise<number>;
