pub mod model_store;
