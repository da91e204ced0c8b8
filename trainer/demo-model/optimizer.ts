// SGD with momentum and global gradient-norm clipping, over the model's flat parameter vector.
// Clipping at 1.0 is Hugging Face Trainer's default (max_grad_norm); it is what keeps the
// config's default learning rate of 0.5 stable in the first steps, when gradients are largest.
// (Adam and Adagrad were tried: both want learning rates far below 0.5 and generalised no
// better on the example dataset, so the default config would have needed changing.)

export interface SgdOptions {
  momentum: number;
  /** Rescale the gradient to at most this L2 norm before each step; 0 disables clipping. */
  maxGradNorm: number;
}

export const DEFAULT_SGD: SgdOptions = { momentum: 0.9, maxGradNorm: 1 };

export class Sgd {
  private readonly velocity: Float64Array;

  constructor(
    size: number,
    private readonly options: SgdOptions = DEFAULT_SGD,
  ) {
    this.velocity = new Float64Array(size);
  }

  /** One update; returns the gradient norm before clipping (worth logging: a spike means trouble). */
  step(params: Float64Array, grads: Float64Array, learningRate: number): number {
    let squares = 0;
    for (let i = 0; i < grads.length; i++) {
      const value = grads[i] as number;
      squares += value * value;
    }
    const norm = Math.sqrt(squares);
    const { momentum, maxGradNorm } = this.options;
    const clip = maxGradNorm > 0 && norm > maxGradNorm ? maxGradNorm / norm : 1;
    const v = this.velocity;
    for (let i = 0; i < params.length; i++) {
      const velocity = momentum * (v[i] as number) + (grads[i] as number) * clip;
      v[i] = velocity;
      params[i] = (params[i] as number) - learningRate * velocity;
    }
    return norm;
  }
}
