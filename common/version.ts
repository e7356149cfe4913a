/** Kept in step with package.json by the release process (test/common/version.test.ts checks). */
export const VERSION = '0.1.0';
