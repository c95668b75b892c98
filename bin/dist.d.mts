// Types of bin/dist.mjs (plain JavaScript: it runs before anything is compiled).
export declare const ROOT: string;
export declare const DIST: string;
export declare const MANIFEST: string;
export declare const WORKFLOW_BUNDLE: string;
export declare const WORKFLOW_BUNDLE_ENV: string;
export declare const CLI_BUNDLE_DIR: string;
export declare const CLI_BUNDLE_EXTERNAL: string[];
export declare const SOURCE_DIRS: string[];
export declare const SOURCE_FILES: string[];
export declare const BUILD_INPUTS: string[];
export interface BuildManifest {
  version: 1;
  builtAt: string;
  files: Record<string, { size: number; mtimeMs: number; sha256: string }>;
}
export declare function buildInputs(root?: string): string[];
export declare function manifestOf(root?: string): BuildManifest;
export declare function staleReason(root?: string): string | undefined;
export declare function importEntry(name: string, opts?: { bundle?: boolean }): Promise<{ module: Record<string, unknown>; compiled: boolean }>;
