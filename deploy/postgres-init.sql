-- Databases of the compose file's PostgreSQL beside `market` (POSTGRES_DB): MLflow's, the job
-- store and prediction log's, and Optuna's (MLflow and Optuna each keep an alembic_version table).
CREATE DATABASE mlflow OWNER trademl;
CREATE DATABASE jobs OWNER trademl;
CREATE DATABASE optuna OWNER trademl;
