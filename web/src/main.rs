fn main() {
    greenthread_web::start();
}
