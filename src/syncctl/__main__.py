from syncctl.entry import main

main()
