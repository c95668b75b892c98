export * from './experiments.js';
export * from './inference.js';
export * from './evaluation.js';
