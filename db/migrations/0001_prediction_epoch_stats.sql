CREATE TABLE "prediction_epoch_stats" (
	"job_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"epoch" integer NOT NULL,
	"trigger" text NOT NULL,
	"count" integer NOT NULL,
	"min_step" integer NOT NULL,
	"max_step" integer NOT NULL,
	"last_write_at" timestamp with time zone NOT NULL,
	CONSTRAINT "prediction_epoch_stats_job_id_epoch_trigger_pk" PRIMARY KEY("job_id","epoch","trigger")
);
--> statement-breakpoint
ALTER TABLE "prediction_epoch_stats" ADD CONSTRAINT "prediction_epoch_stats_job_id_training_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."training_jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "prediction_epoch_stats" ADD CONSTRAINT "prediction_epoch_stats_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;