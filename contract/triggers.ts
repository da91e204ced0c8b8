// The prediction triggers, shared by the database schema, the wire schemas and the trainer.
export const PREDICTION_TRIGGERS = ['eval', 'epoch', 'steps'] as const;
export type PredictionTrigger = (typeof PREDICTION_TRIGGERS)[number];
