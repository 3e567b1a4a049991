export { nobleAead as browserAead } from '../../crypto/index.js';
