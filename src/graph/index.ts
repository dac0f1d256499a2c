// The graph builder: import ops from here.
export * from './graph.ts';
export * from './ops/elementwise.ts';
export * from './ops/shape.ts';
export * from './ops/conv.ts';
export * from './ops/nn.ts';
export * from './ops/resample.ts';
export * from './ops/upfirdn2d.ts';
export { vjp, grad } from './autodiff.ts';
export { toOnnx, OPSET } from './serialize.ts';
