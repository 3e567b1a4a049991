/** platform/browser: what the page uses. */
export { BrowserController, type BrowserControllerOptions, DEFAULT_BROWSER_NAME, DEFAULT_DB_NAME, type PairedDevice, type Stage } from './controller.js';
