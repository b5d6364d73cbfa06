from charlm.cli.main import main

main()
