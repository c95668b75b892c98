ALTER TABLE "runs" ADD COLUMN "group_id" text;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "axes" jsonb;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "replay_of" text;--> statement-breakpoint
ALTER TABLE "runs" ADD COLUMN "replay_from" text;--> statement-breakpoint
ALTER TABLE "stages" ADD COLUMN "reuse_key" text;--> statement-breakpoint
ALTER TABLE "stages" ADD COLUMN "reused_from_run" text;--> statement-breakpoint
ALTER TABLE "stages" ADD COLUMN "reused_from_stage" text;--> statement-breakpoint
CREATE INDEX "runs_group_idx" ON "runs" USING btree ("group_id");--> statement-breakpoint
CREATE INDEX "stages_reuse_key_idx" ON "stages" USING btree ("reuse_key");