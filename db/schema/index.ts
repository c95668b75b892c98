export * from './experiments.js';
export * from './inference.js';
export * from './evaluation.js';
export * from './artifacts.js';
export * from './sweep.js';
export * from './distill.js';
export * from './training.js';
export * from './serving.js';
