from shengtu.cli import main

main()
