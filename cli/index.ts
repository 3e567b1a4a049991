/** cli: what other folders use. */
export { main } from './main.js';
