/** cli: what other folders use. */
export { main, runProcess } from './main.js';
