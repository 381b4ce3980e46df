BEGIN TRANSACTION;
CREATE TABLE study_assignments (
	id INTEGER NOT NULL, 
	participant_id INTEGER NOT NULL, 
	ord INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	shown_json TEXT NOT NULL, 
	served_at VARCHAR(40), 
	PRIMARY KEY (id), 
	UNIQUE (participant_id, ord), 
	UNIQUE (participant_id, trial_id), 
	FOREIGN KEY(participant_id) REFERENCES study_participants (id), 
	FOREIGN KEY(trial_id) REFERENCES study_trials (id)
);
INSERT INTO "study_assignments" VALUES(1,1,0,4,'["__bicubic__", "__hr__"]','2026-12-01T22:09:24.226470+00:00');
INSERT INTO "study_assignments" VALUES(2,1,1,1,'["alpha", "beta", "gamma"]','2026-12-01T22:09:24.229603+00:00');
INSERT INTO "study_assignments" VALUES(3,1,2,3,'["alpha", "gamma", "beta"]','2026-12-01T22:09:24.231690+00:00');
INSERT INTO "study_assignments" VALUES(4,1,3,2,'["alpha", "gamma", "beta"]',NULL);
INSERT INTO "study_assignments" VALUES(5,2,0,3,'["alpha", "beta", "gamma"]','2026-12-01T22:09:24.234275+00:00');
INSERT INTO "study_assignments" VALUES(6,2,1,2,'["alpha", "gamma", "beta"]','2026-12-01T22:09:24.236099+00:00');
INSERT INTO "study_assignments" VALUES(7,2,2,1,'["beta", "gamma", "alpha"]',NULL);
INSERT INTO "study_assignments" VALUES(8,2,3,4,'["__hr__", "__bicubic__"]',NULL);
CREATE TABLE study_participants (
	id INTEGER NOT NULL, 
	study_id INTEGER NOT NULL, 
	number INTEGER NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	enrolled_via VARCHAR(16) NOT NULL, 
	created_at VARCHAR(40) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (study_id, number), 
	FOREIGN KEY(study_id) REFERENCES study_studies (id), 
	UNIQUE (token_hash)
);
INSERT INTO "study_participants" VALUES(1,1,0,'9c25a98fb0d9f7771ce4ad34c42aa6588adf72e21a1a05c93529c61f77fbc145','token','2026-12-01T22:09:24.217121+00:00');
INSERT INTO "study_participants" VALUES(2,1,1,'8ad5a58ddee267f92413a67f38e4ac2c19f315725a000d1a924925ed00da6233','token','2026-12-01T22:09:24.223184+00:00');
CREATE TABLE study_studies (
	id INTEGER NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	config_json TEXT NOT NULL, 
	config_hash VARCHAR(64) NOT NULL, 
	admin_hash VARCHAR(200) NOT NULL, 
	genesis_hash VARCHAR(64) NOT NULL, 
	app_version VARCHAR(40) NOT NULL, 
	created_at VARCHAR(40) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
INSERT INTO "study_studies" VALUES(1,'legacy-study','{"candidates_per_trial": null, "content_hash": "0000000000000000000000000000000000000000000000000000000000000000", "criteria": [{"key": "perceptual", "question": "Which result has the best perceptual quality?"}, {"key": "consistency", "question": "Which result is most consistent with the LR input (structure and texture)?"}], "crop": 16, "dataset": null, "files": {"__hr__": {"img_00": "/srv/studies/legacy/hr/img_00.png", "img_01": "/srv/studies/legacy/hr/img_01.png", "img_02": "/srv/studies/legacy/hr/img_02.png"}, "__lr__": {"img_00": "/srv/studies/legacy/lr/img_00.png", "img_01": "/srv/studies/legacy/lr/img_01.png", "img_02": "/srv/studies/legacy/lr/img_02.png"}, "alpha": {"img_00": "/srv/studies/legacy/alpha/img_00.png", "img_01": "/srv/studies/legacy/alpha/img_01.png", "img_02": "/srv/studies/legacy/alpha/img_02.png"}, "beta": {"img_00": "/srv/studies/legacy/beta/img_00.png", "img_01": "/srv/studies/legacy/beta/img_01.png", "img_02": "/srv/studies/legacy/beta/img_02.png"}, "gamma": {"img_00": "/srv/studies/legacy/gamma/img_00.png", "img_01": "/srv/studies/legacy/gamma/img_01.png", "img_02": "/srv/studies/legacy/gamma/img_02.png"}}, "gold": {"distractor": "bicubic", "images": ["img_00"], "per_participant": 1}, "hr": "/srv/studies/legacy/hr", "images": ["img_00", "img_01", "img_02"], "instructions": "", "lr": "/srv/studies/legacy/lr", "methods": {"alpha": "/srv/studies/legacy/alpha", "beta": "/srv/studies/legacy/beta", "gamma": "/srv/studies/legacy/gamma"}, "name": "legacy-study", "open_enrolment": false, "scale": null, "seed": 0, "title": "Which result looks best?", "votes_per_participant": null}','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','scrypt$13987404d64573897bb9572884d21f78$1a6b32c2c7ab73c0c381d1ea39ef63aa470a3fdcae8912ddf4145fd9b5badc0eb858da84b88ad573b4d0cc0f9db6877b458a6d9021af5ed67844ed686e5718f6','33ac2b5944e5eda92ca8f8c825336819782fbd288117c7a0635204a8e23d7afc','0.1.0','2026-12-01T22:09:24.196979+00:00');
CREATE TABLE study_trials (
	id INTEGER NOT NULL, 
	study_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	image_id VARCHAR(255) NOT NULL, 
	candidates_json TEXT NOT NULL, 
	gold_answer VARCHAR(255), 
	PRIMARY KEY (id), 
	UNIQUE (study_id, position), 
	FOREIGN KEY(study_id) REFERENCES study_studies (id)
);
INSERT INTO "study_trials" VALUES(1,1,0,'img_00','["alpha", "beta", "gamma"]',NULL);
INSERT INTO "study_trials" VALUES(2,1,1,'img_01','["alpha", "beta", "gamma"]',NULL);
INSERT INTO "study_trials" VALUES(3,1,2,'img_02','["alpha", "beta", "gamma"]',NULL);
INSERT INTO "study_trials" VALUES(4,1,3,'img_00','["__hr__", "__bicubic__"]','__hr__');
CREATE TABLE study_votes (
	id INTEGER NOT NULL, 
	study_id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	participant_id INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	assignment_id INTEGER NOT NULL, 
	criterion VARCHAR(64) NOT NULL, 
	position INTEGER NOT NULL, 
	choice VARCHAR(255) NOT NULL, 
	served_at VARCHAR(40), 
	voted_at VARCHAR(40) NOT NULL, 
	app_version VARCHAR(40) NOT NULL, 
	config_hash VARCHAR(64) NOT NULL, 
	prev_hash VARCHAR(64) NOT NULL, 
	row_hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_study_vote_once UNIQUE (participant_id, trial_id, criterion), 
	CONSTRAINT uq_study_vote_seq UNIQUE (study_id, seq), 
	CONSTRAINT uq_study_vote_chain UNIQUE (study_id, prev_hash), 
	FOREIGN KEY(study_id) REFERENCES study_studies (id), 
	FOREIGN KEY(participant_id) REFERENCES study_participants (id), 
	FOREIGN KEY(trial_id) REFERENCES study_trials (id), 
	FOREIGN KEY(assignment_id) REFERENCES study_assignments (id)
);
INSERT INTO "study_votes" VALUES(1,1,1,1,4,1,'perceptual',0,'__bicubic__','2026-12-01T22:09:24.226470+00:00','2026-12-01T22:09:24.227637+00:00','0.1.0','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','33ac2b5944e5eda92ca8f8c825336819782fbd288117c7a0635204a8e23d7afc','f2c767d9d7b2caae40f6c301d66eb4e19a0c302e757cded8f403e7cfdc159384');
INSERT INTO "study_votes" VALUES(2,1,2,1,4,1,'consistency',0,'__bicubic__','2026-12-01T22:09:24.226470+00:00','2026-12-01T22:09:24.228847+00:00','0.1.0','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','f2c767d9d7b2caae40f6c301d66eb4e19a0c302e757cded8f403e7cfdc159384','cca074a0f4604bbb8ffdc338f7503833c0c53bc5f8549a61cf142f45b8b72e50');
INSERT INTO "study_votes" VALUES(3,1,3,1,1,2,'perceptual',1,'beta','2026-12-01T22:09:24.229603+00:00','2026-12-01T22:09:24.230479+00:00','0.1.0','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','cca074a0f4604bbb8ffdc338f7503833c0c53bc5f8549a61cf142f45b8b72e50','c0999ed73eed9fd1a6b1a30ad9d154930067d5bbe928d0371979971b30267513');
INSERT INTO "study_votes" VALUES(4,1,4,1,1,2,'consistency',1,'beta','2026-12-01T22:09:24.229603+00:00','2026-12-01T22:09:24.231165+00:00','0.1.0','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','c0999ed73eed9fd1a6b1a30ad9d154930067d5bbe928d0371979971b30267513','8ebbed61769dd23ed85a8b34fcb457cd6b7b1997d36c2c6c148c9858f1e0130e');
INSERT INTO "study_votes" VALUES(5,1,5,1,3,3,'perceptual',2,'beta','2026-12-01T22:09:24.231690+00:00','2026-12-01T22:09:24.232353+00:00','0.1.0','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','8ebbed61769dd23ed85a8b34fcb457cd6b7b1997d36c2c6c148c9858f1e0130e','c0d2eee5820caa3f041e766b92c9589a49facf3aa01de73e8c7ed9d312c9130a');
INSERT INTO "study_votes" VALUES(6,1,6,1,3,3,'consistency',2,'beta','2026-12-01T22:09:24.231690+00:00','2026-12-01T22:09:24.233051+00:00','0.1.0','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','c0d2eee5820caa3f041e766b92c9589a49facf3aa01de73e8c7ed9d312c9130a','78ae693a33a9f531728775d5cb8364784749ac56fc0ba14d881f89e820b44dd2');
INSERT INTO "study_votes" VALUES(7,1,7,2,3,5,'perceptual',1,'beta','2026-12-01T22:09:24.234275+00:00','2026-12-01T22:09:24.234926+00:00','0.1.0','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','78ae693a33a9f531728775d5cb8364784749ac56fc0ba14d881f89e820b44dd2','d66ea533b70d070a56a9b078189094dd856dc0063b23dddde79ccdfea1586412');
INSERT INTO "study_votes" VALUES(8,1,8,2,3,5,'consistency',1,'beta','2026-12-01T22:09:24.234275+00:00','2026-12-01T22:09:24.235587+00:00','0.1.0','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','d66ea533b70d070a56a9b078189094dd856dc0063b23dddde79ccdfea1586412','70d085bab5a3fdc716c9429c8be4fdcd544d55e8c7a9f50902ccfc645dad5691');
INSERT INTO "study_votes" VALUES(9,1,9,2,2,6,'perceptual',2,'beta','2026-12-01T22:09:24.236099+00:00','2026-12-01T22:09:24.236713+00:00','0.1.0','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','70d085bab5a3fdc716c9429c8be4fdcd544d55e8c7a9f50902ccfc645dad5691','50cf085e3573f8c264f24f4cd211f727dc809233127d5237b23b3f526feaa5c6');
INSERT INTO "study_votes" VALUES(10,1,10,2,2,6,'consistency',2,'beta','2026-12-01T22:09:24.236099+00:00','2026-12-01T22:09:24.237372+00:00','0.1.0','94dbe325d2b536ac19b859f6c30b0473bb4e8a32837effe99574b2c05cbfecce','50cf085e3573f8c264f24f4cd211f727dc809233127d5237b23b3f526feaa5c6','26748c9fd09d4874d4d05f24c5b643e93ccab14aadcaa8c9d1db959598e07bd5');
CREATE TRIGGER study_votes_no_update BEFORE UPDATE ON study_votes BEGIN SELECT RAISE(ABORT, 'study_votes is append-only: UPDATE rejected'); END;
CREATE TRIGGER study_votes_no_delete BEFORE DELETE ON study_votes BEGIN SELECT RAISE(ABORT, 'study_votes is append-only: DELETE rejected'); END;
COMMIT;
